/* The kernel proper as an x86-64 ELF executable (vmlinux): validating its
 * program headers and loading its PT_LOAD segments at their physical
 * addresses, the way the in-guest decompressor would have placed them. */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "guest_io.h"
#include "vmswitch/util.h"

static int check_ehdr(const Elf64_Ehdr *h, size_t len, const char *what, struct err *e)
{
	if (memcmp(h->e_ident, ELFMAG, SELFMAG) != 0)
		return err_set(e, EINVAL, "%s: not an ELF file", what);
	if (h->e_ident[EI_CLASS] != ELFCLASS64 || h->e_ident[EI_DATA] != ELFDATA2LSB ||
	    h->e_machine != EM_X86_64)
		return err_set(e, EINVAL, "%s: not an x86-64 ELF (class %u, data %u, "
			       "machine %u)", what, h->e_ident[EI_CLASS],
			       h->e_ident[EI_DATA], h->e_machine);
	if (h->e_type != ET_EXEC)
		return err_set(e, EINVAL, "%s: ELF type %u is not an executable", what,
			       h->e_type);
	if (h->e_phentsize != sizeof(Elf64_Phdr) || h->e_phnum == 0 ||
	    h->e_phoff > len || (len - h->e_phoff) / sizeof(Elf64_Phdr) < h->e_phnum)
		return err_set(e, EINVAL, "%s: ELF program headers (%u at 0x%llx) lie "
			       "outside the file (%zu bytes)", what, h->e_phnum,
			       (unsigned long long)h->e_phoff, len);
	return 0;
}

/* One PT_LOAD: inside the file, above our low-memory structures, no wrap. */
static int take_segment(const Elf64_Phdr *ph, size_t len, const char *what,
			struct boot_elf *out, struct err *e)
{
	struct boot_elf_seg *s;

	if (ph->p_filesz > ph->p_memsz || ph->p_offset > len ||
	    len - ph->p_offset < ph->p_filesz)
		return err_set(e, EINVAL, "%s: ELF segment at 0x%llx has its data "
			       "outside the file or filesz > memsz", what,
			       (unsigned long long)ph->p_paddr);
	if (ph->p_paddr < BOOT_LOW_END || ph->p_paddr + ph->p_memsz < ph->p_paddr ||
	    ph->p_paddr + ph->p_memsz > BOOT_PT_IDENTITY)
		return err_set(e, EINVAL, "%s: ELF segment 0x%llx-0x%llx is outside "
			       "1 MiB..4 GiB (it would overwrite the boot structures "
			       "or leave the identity map)", what,
			       (unsigned long long)ph->p_paddr,
			       (unsigned long long)(ph->p_paddr + ph->p_memsz));
	if (out->nseg == BOOT_ELF_MAX_SEGS)
		return err_set(e, EINVAL, "%s: more than %u ELF load segments", what,
			       BOOT_ELF_MAX_SEGS);
	s = &out->seg[out->nseg++];
	*s = (struct boot_elf_seg){.paddr = ph->p_paddr, .offset = ph->p_offset,
				   .filesz = ph->p_filesz, .memsz = ph->p_memsz};
	return 0;
}

static int check_overlaps(const struct boot_elf *elf, const char *what, struct err *e)
{
	for (unsigned i = 0; i < elf->nseg; i++)
		for (unsigned j = i + 1; j < elf->nseg; j++) {
			const struct boot_elf_seg *a = &elf->seg[i], *b = &elf->seg[j];

			if (a->paddr < b->paddr + b->memsz && b->paddr < a->paddr + a->memsz)
				return err_set(e, EINVAL, "%s: ELF segments at 0x%llx and "
					       "0x%llx overlap", what,
					       (unsigned long long)a->paddr,
					       (unsigned long long)b->paddr);
		}
	return 0;
}

/* Program header i (memcpy: e_phoff need not be aligned). */
static Elf64_Phdr phdr(const uint8_t *buf, const Elf64_Ehdr *h, unsigned i)
{
	Elf64_Phdr p;

	memcpy(&p, buf + h->e_phoff + (uint64_t)i * sizeof(p), sizeof(p));
	return p;
}

/* vmlinux's e_entry may be virtual (startup_64) or already physical
 * (x86-64 links ENTRY(phys_startup_64)): find the segment holding it. */
static int find_entry(const uint8_t *buf, const Elf64_Ehdr *h, const char *what,
		      uint64_t *out, struct err *e)
{
	for (int physical = 0; physical <= 1; physical++)
		for (unsigned i = 0; i < h->e_phnum; i++) {
			Elf64_Phdr p = phdr(buf, h, i);
			uint64_t base = physical ? p.p_paddr : p.p_vaddr;

			if (p.p_type == PT_LOAD && h->e_entry - base < p.p_filesz) {
				*out = p.p_paddr + (h->e_entry - base);
				return 0;
			}
		}
	return err_set(e, EINVAL, "%s: ELF entry 0x%llx is not inside any load "
		       "segment", what, (unsigned long long)h->e_entry);
}

int boot_elf_parse(const uint8_t *buf, size_t len, const char *what,
		   struct boot_elf *out, struct err *e)
{
	Elf64_Ehdr h;

	*out = (struct boot_elf){.lo = UINT64_MAX};
	if (len < sizeof(h))
		return err_set(e, EINVAL, "%s: %zu bytes is too short for an ELF header",
			       what, len);
	memcpy(&h, buf, sizeof(h));
	if (check_ehdr(&h, len, what, e) < 0)
		return -1;
	for (unsigned i = 0; i < h.e_phnum; i++) {
		Elf64_Phdr p = phdr(buf, &h, i);

		if (p.p_type != PT_LOAD || p.p_memsz == 0)
			continue;
		if (take_segment(&p, len, what, out, e) < 0)
			return -1;
		out->lo = MIN(out->lo, p.p_paddr);
		out->hi = MAX(out->hi, p.p_paddr + p.p_memsz);
	}
	if (out->nseg == 0)
		return err_set(e, EINVAL, "%s: ELF has no load segments", what);
	if (check_overlaps(out, what, e) < 0)
		return -1;
	return find_entry(buf, &h, what, &out->entry, e);
}

int boot_elf_load(const uint8_t *buf, const struct boot_elf *elf,
		  const struct boot_guest *g, struct err *e)
{
	for (unsigned i = 0; i < elf->nseg; i++) {
		const struct boot_elf_seg *s = &elf->seg[i];

		if (guest_write(g, s->paddr, buf + s->offset, s->filesz, e) < 0 ||
		    guest_zero(g, s->paddr + s->filesz, s->memsz - s->filesz, e) < 0)
			return err_wrap(e, "loading ELF segment 0x%llx-0x%llx",
					(unsigned long long)s->paddr,
					(unsigned long long)(s->paddr + s->memsz));
	}
	return 0;
}
