/*
 * A seccomp filter that keeps a command from making user namespaces. On a kernel shared with
 * others (WSL's one kernel under every distribution of the user) a user namespace of its own is a
 * way to capabilities that the kernel checks only against that namespace (mounts, network
 * settings, much of its less-trodden code), which the kernel's own sysctl could close only for
 * everyone. unshare and clone with CLONE_NEWUSER fail with EPERM; clone3, whose flags sit in
 * memory a filter cannot read, fails with ENOSYS, so C libraries fall back to clone; calls of
 * another ABI (x32, i386) fail with EPERM, since their numbers differ.
 */
#ifndef AGENTSANDBOX_USERNS_H
#define AGENTSANDBOX_USERNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

/* The kernel's seccomp and classic-BPF ABI, spelled out: musl's headers carry no <linux/...>. */
struct as_sock_filter { uint16_t code; uint8_t jt, jf; uint32_t k; };
struct as_sock_fprog { unsigned short len; struct as_sock_filter *filter; };
struct as_seccomp_data { int nr; uint32_t arch; uint64_t instruction_pointer; uint64_t args[6]; };
#define AS_BPF_LD_W_ABS 0x20
#define AS_BPF_JEQ_K 0x15
#define AS_BPF_JGE_K 0x35
#define AS_BPF_JSET_K 0x45
#define AS_BPF_RET_K 0x06
#define AS_STMT(code, k) {(code), 0, 0, (k)}
#define AS_JUMP(code, k, jt, jf) {(code), (jt), (jf), (k)}
#define AS_SECCOMP_MODE_FILTER 2
#define AS_RET_ALLOW 0x7fff0000U
#define AS_RET_ERRNO(e) (0x00050000U | ((e) & 0xffff))

#if defined(__x86_64__)
#define AS_AUDIT_ARCH 0xc000003eU /* AUDIT_ARCH_X86_64 */
#elif defined(__aarch64__)
#define AS_AUDIT_ARCH 0xc00000b7U /* AUDIT_ARCH_AARCH64 */
#else
#error "the user-namespace filter knows x86_64 and aarch64"
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#define AS_CLONE_NEWUSER 0x10000000U

static int deny_user_namespaces(void) {
    struct as_sock_filter code[] = {
        AS_STMT(AS_BPF_LD_W_ABS, offsetof(struct as_seccomp_data, arch)),
        AS_JUMP(AS_BPF_JEQ_K, AS_AUDIT_ARCH, 1, 0),
        AS_STMT(AS_BPF_RET_K, AS_RET_ERRNO(EPERM)),
        AS_STMT(AS_BPF_LD_W_ABS, offsetof(struct as_seccomp_data, nr)),
#if defined(__x86_64__)
        AS_JUMP(AS_BPF_JGE_K, 0x40000000U /* __X32_SYSCALL_BIT */, 0, 1),
        AS_STMT(AS_BPF_RET_K, AS_RET_ERRNO(EPERM)),
#endif
        AS_JUMP(AS_BPF_JEQ_K, __NR_clone3, 0, 1),
        AS_STMT(AS_BPF_RET_K, AS_RET_ERRNO(ENOSYS)),
        AS_JUMP(AS_BPF_JEQ_K, __NR_unshare, 1, 0),
        AS_JUMP(AS_BPF_JEQ_K, __NR_clone, 0, 3),
        /* The flags are the first argument of both; CLONE_NEWUSER is in its low 32 bits (little-endian). */
        AS_STMT(AS_BPF_LD_W_ABS, offsetof(struct as_seccomp_data, args[0])),
        AS_JUMP(AS_BPF_JSET_K, AS_CLONE_NEWUSER, 0, 1),
        AS_STMT(AS_BPF_RET_K, AS_RET_ERRNO(EPERM)),
        AS_STMT(AS_BPF_RET_K, AS_RET_ALLOW),
    };
    struct as_sock_fprog program = {.len = sizeof code / sizeof code[0], .filter = code};
    return prctl(PR_SET_SECCOMP, AS_SECCOMP_MODE_FILTER, &program);
}

#endif
