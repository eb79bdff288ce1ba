dnl AX_PTHREAD_SIMPLE: vmswitch needs POSIX threads (one per vCPU, monitor, remapper).
AC_DEFUN([AX_PTHREAD_SIMPLE], [
  AC_CHECK_LIB([pthread], [pthread_create], [PTHREAD_LIBS=-lpthread],
               [AC_MSG_ERROR([POSIX threads are required])])
  AC_SUBST([PTHREAD_LIBS])
])
