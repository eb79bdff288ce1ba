/* vmswitch: command line, and the order of things: validate every input
 * before touching /dev/kvm, build the VM, hook up the console and monitor,
 * run, and return the guest's status. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "vmswitch/boot.h"
#include "vmswitch/session.h"
#include "vmswitch/mem.h"
#include "vmswitch/monitor.h"
#include "vmswitch/util.h"
#include "vmswitch/vm.h"

#define MAX_MONITORS 8

struct options {
	struct vm_config vm;
	const char *monitors[MAX_MONITORS];
	unsigned nmonitors;
	bool monitor_stdio;
	const char *serial_path;     /* --serial file:PATH */
	bool no_host_decompress;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: vmswitch --kernel FILE [options]\n"
		"       vmswitch --connect PATH [COMMAND...]\n"
		"\n"
		"Boot FILE (a bzImage) on KVM with memory in pass-through mode; memory\n"
		"virtualization is attached and detached live from the monitor.\n"
		"\n"
		"  -k, --kernel FILE        kernel to boot (Linux bzImage, or guest/vmswitch-guest)\n"
		"  -i, --initrd FILE        initial ramdisk\n"
		"  -a, --append CMDLINE     kernel command line\n"
		"  -m, --memory SIZE        guest RAM, K/M/G suffixes (default 256M)\n"
		"  -c, --cpus N             vCPUs (default 1)\n"
		"      --spare SIZE         extra machine memory for migrate/evacuate (default 64M)\n"
		"      --backmap KIND       list | refcount | search (default list)\n"
		"      --hugepages MODE     auto | off | required (default auto)\n"
		"      --protect HOW        auto | uffd | pause: how pages are protected while\n"
		"                           copied (auto: a whole devirtualize unmaps the pages\n"
		"                           it moves, other bulk remaps pause the vCPUs per\n"
		"                           batch, single pages use userfaultfd write\n"
		"                           protection; pause: never unmap)\n"
		"      --pvm-compat MODE    auto | off: work around kvm_pvm's emulator (default auto)\n"
		"      --no-host-decompress boot a bzImage through its own decompressor\n"
		"      --monitor WHERE      unix:PATH (repeatable) or stdio\n"
		"      --serial WHERE       stdio (default) or file:PATH\n"
		"      --connect PATH       send monitor commands to a running vmswitch\n"
		"  -v, --verbose            say more about what happens\n"
		"  -h, --help               this text\n"
		"  -V, --version            version\n"
		"\n"
		"On the terminal, Ctrl-A c switches between the guest console and the\n"
		"monitor, Ctrl-A x quits, Ctrl-A h lists the keys.\n"
		"Exit status: the guest's (0-255) when it powers off, 0 when it reboots,\n"
		"2 for bad input, 125 when the guest crashes (triple fault, emulation failure).\n");
}

static int bad(const char *opt, const struct err *e)
{
	fprintf(stderr, "vmswitch: %s: %s\n", opt, e->msg);
	return -1;
}

static int parse_choice(const char *opt, const char *arg, const char *const *names, int n, int *out)
{
	struct err e;

	for (int i = 0; i < n; i++)
		if (strcmp(arg, names[i]) == 0) {
			*out = i;
			return 0;
		}
	err_set(&e, EINVAL, "'%s' is not one of the accepted values", arg);
	return bad(opt, &e);
}

static int parse_args(int argc, char **argv, struct options *o)
{
	enum { O_SPARE = 256, O_BACKMAP, O_HUGE, O_PROTECT, O_PVM, O_MONITOR, O_SERIAL, O_NODECOMP };
	static const struct option longopts[] = {
		{"kernel", required_argument, 0, 'k'}, {"initrd", required_argument, 0, 'i'},
		{"append", required_argument, 0, 'a'}, {"memory", required_argument, 0, 'm'},
		{"cpus", required_argument, 0, 'c'}, {"spare", required_argument, 0, O_SPARE},
		{"backmap", required_argument, 0, O_BACKMAP}, {"hugepages", required_argument, 0, O_HUGE},
		{"protect", required_argument, 0, O_PROTECT}, {"pvm-compat", required_argument, 0, O_PVM},
		{"monitor", required_argument, 0, O_MONITOR}, {"serial", required_argument, 0, O_SERIAL},
		{"no-host-decompress", no_argument, 0, O_NODECOMP},
		{"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
	};
	static const char *const backmaps[] = {"list", "refcount", "search"};
	static const char *const huge[] = {"off", "auto", "required"};
	static const char *const protect[] = {"auto", "uffd", "pause"};
	static const char *const pvm[] = {"auto", "off"};
	struct err e = {0};
	uint64_t n;
	int c, choice;

	opterr = 0; /* one error line of our own, not getopt's two */
	while ((c = getopt_long(argc, argv, "k:i:a:m:c:vhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'k': o->vm.kernel = optarg; break;
		case 'i': o->vm.initrd = optarg; break;
		case 'a': o->vm.cmdline = optarg; break;
		case 'm':
			if (parse_size(optarg, &o->vm.ram_size, &e) < 0)
				return bad("--memory", &e);
			break;
		case 'c':
			if (parse_u64(optarg, &n, &e) < 0)
				return bad("--cpus", &e);
			if (n == 0 || n > VM_MAX_CPUS) {
				err_set(&e, EINVAL, "%s vCPUs: vmswitch supports 1 to %d", optarg, VM_MAX_CPUS);
				return bad("--cpus", &e);
			}
			o->vm.ncpus = (unsigned)n;
			break;
		case O_SPARE:
			if (parse_size(optarg, &o->vm.spare_size, &e) < 0)
				return bad("--spare", &e);
			break;
		case O_BACKMAP:
			if (parse_choice("--backmap", optarg, backmaps, 3, &choice) < 0)
				return -1;
			o->vm.backmap = (enum backmap_kind)choice;
			break;
		case O_HUGE:
			if (parse_choice("--hugepages", optarg, huge, 3, &choice) < 0)
				return -1;
			o->vm.hugepages = (enum hugepages_mode)choice;
			break;
		case O_PROTECT:
			if (parse_choice("--protect", optarg, protect, 3, &choice) < 0)
				return -1;
			o->vm.protect_by_wp = choice == 1;
			o->vm.protect_by_pause = choice == 2;
			break;
		case O_PVM:
			if (parse_choice("--pvm-compat", optarg, pvm, 2, &choice) < 0)
				return -1;
			o->vm.pvm_compat = (enum pvm_compat)choice;
			break;
		case O_MONITOR:
			if (strcmp(optarg, "stdio") == 0) {
				o->monitor_stdio = true;
			} else if (strncmp(optarg, "unix:", 5) == 0 && optarg[5]) {
				if (o->nmonitors == MAX_MONITORS) {
					err_set(&e, EINVAL, "at most %d sockets", MAX_MONITORS);
					return bad("--monitor", &e);
				}
				o->monitors[o->nmonitors++] = optarg + 5;
			} else {
				err_set(&e, EINVAL, "'%s': use unix:PATH or stdio", optarg);
				return bad("--monitor", &e);
			}
			break;
		case O_SERIAL:
			if (strncmp(optarg, "file:", 5) == 0 && optarg[5]) {
				o->serial_path = optarg + 5;
			} else if (strcmp(optarg, "stdio") != 0) {
				err_set(&e, EINVAL, "'%s': use stdio or file:PATH", optarg);
				return bad("--serial", &e);
			}
			break;
		case O_NODECOMP: o->no_host_decompress = true; break;
		case 'v': log_verbose = true; break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("vmswitch %s\n", PACKAGE_VERSION); exit(0);
		default:
			fprintf(stderr, "vmswitch: %s '%s' (try 'vmswitch --help')\n",
				c == ':' || (c == '?' && optopt && strchr("kiamc", optopt)) ?
				"missing argument for option" : "unknown option", argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmswitch: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!o->vm.kernel) {
		fprintf(stderr, "vmswitch: --kernel FILE is required (try 'vmswitch --help')\n");
		return -1;
	}
	return 0;
}

/* Refuse a guest that the host could never back: shared memory is not
 * reclaimable without swap, so overcommitting it ends in the OOM killer. */
static int check_host_memory(uint64_t want, struct err *e)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	uint64_t kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %" SCNu64 " kB", &kb) == 1)
			break;
	fclose(f);
	if (kb && want > kb * 1024)
		return err_set(e, ENOMEM, "%" PRIu64 " MiB is more than the host's %" PRIu64 " MiB of RAM",
			       want >> 20, kb >> 10);
	return 0;
}

/* kvm_pvm's emulator runs all guest CPL0 code and cannot execute what Linux
 * uses by default (xrstor, clac, ...): add the options that keep Linux off
 * those paths, and say what was added and why. */
static int apply_pvm_cmdline(struct options *o, const struct kvm_host *host,
			     const struct boot_image *img, struct boot_pvm_cmdline *pc, struct err *e)
{
	struct boot_params_cfg bpc = {.ncpus = o->vm.ncpus};

	if (!host->pvm || o->vm.pvm_compat != PVM_COMPAT_AUTO || !img->hdr.payload_length)
		return 0;
	if (boot_pvm_cmdline(o->vm.cmdline, true, true, pc, e) < 0)
		return -1;
	for (unsigned i = 0; i < pc->n; i++)
		log_info("PVM host: added '%s' (%s)", pc->added[i].option, pc->added[i].why);
	o->vm.cmdline = pc->cmdline;
	bpc.cmdline = pc->cmdline;
	return boot_params_check(img, &bpc, e);
}

int main(int argc, char **argv)
{
	struct options o = {.vm = {.ram_size = 256 * MiB, .spare_size = 64 * MiB, .ncpus = 1,
				   .backmap = BACKMAP_LIST, .hugepages = HUGEPAGES_AUTO}};
	struct boot_image img;
	struct mem_layout layout;
	struct kvm_host host = {.fd = -1};
	struct boot_pvm_cmdline pvm_cmdline = {0};
	struct err e = {0};
	int status;

	log_start_ns = now_ns();
	if (argc > 1 && strcmp(argv[1], "--connect") == 0) {
		if (argc < 3) {
			fprintf(stderr, "vmswitch: --connect needs the monitor socket's PATH\n");
			return VM_EXIT_BADINPUT;
		}
		return monitor_client_main(argv[2], argc - 3, argv + 3);
	}
	if (parse_args(argc, argv, &o) < 0)
		return VM_EXIT_BADINPUT;
	if (mem_layout(o.vm.ram_size, &layout, &e) < 0 || check_host_memory(o.vm.ram_size, &e) < 0)
		return bad("--memory", &e), VM_EXIT_BADINPUT;
	struct boot_open_cfg boc = {.no_host_decompress = o.no_host_decompress};
	if (boot_image_open_with(o.vm.kernel, o.vm.initrd, &boc, &img, &e) < 0) {
		fprintf(stderr, "vmswitch: %s\n", e.msg);
		return VM_EXIT_BADINPUT;
	}
	struct boot_params_cfg bpc = {.cmdline = o.vm.cmdline, .ncpus = o.vm.ncpus};
	if (boot_image_check(&img, &layout, &e) < 0 || boot_params_check(&img, &bpc, &e) < 0) {
		fprintf(stderr, "vmswitch: %s\n", e.msg);
		boot_image_close(&img);
		return VM_EXIT_BADINPUT;
	}
	if (kvm_host_open(&host, &e) < 0) {
		fprintf(stderr, "vmswitch: %s\n", e.msg);
		boot_image_close(&img);
		return VM_EXIT_BADINPUT;
	}
	if (host.pvm)
		log_debug("host KVM is kvm_pvm: guest CPL0 code is emulated, CPUID cannot be masked%s",
			  o.vm.pvm_compat == PVM_COMPAT_AUTO ? "; enabling int3/fwait fallbacks" : "");
	if (apply_pvm_cmdline(&o, &host, &img, &pvm_cmdline, &e) < 0) {
		fprintf(stderr, "vmswitch: --append: %s\n", e.msg);
		boot_image_close(&img);
		kvm_host_close(&host);
		return VM_EXIT_BADINPUT;
	}
	if (o.vm.ncpus > (unsigned)host.max_vcpus) {
		fprintf(stderr, "vmswitch: --cpus: %u vCPUs, this KVM allows %d\n", o.vm.ncpus, host.max_vcpus);
		boot_image_close(&img);
		kvm_host_close(&host);
		return VM_EXIT_BADINPUT;
	}
	struct session_config sc = {.monitors = o.monitors, .nmonitors = o.nmonitors,
				    .monitor_stdio = o.monitor_stdio, .serial_path = o.serial_path};
	status = session_run(&o.vm, &host, &img, &sc, &e);
	log_debug("guest ended with status %d after %.3f ms wall, %.3f CPU-ms", status,
		  (double)(now_ns() - log_start_ns) / 1e6, (double)cpu_ns() / 1e6);
	if (status < 0) {
		fprintf(stderr, "vmswitch: %s\n", e.msg);
		status = VM_EXIT_CRASH;
	}
	boot_image_close(&img);
	kvm_host_close(&host);
	boot_pvm_cmdline_free(&pvm_cmdline);
	return status;
}
