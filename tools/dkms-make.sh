#!/usr/bin/env bash
# DKMS's build step (dkms.conf's MAKE[0]), run in DKMS's copy of the
# sources: vpm.ko for the kernel tree $1, with the toolchain that tree was
# built with (GCC, or the clang named by its config).
set -euo pipefail
kdir=${1:?usage: $0 KERNEL_BUILD_TREE}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/env.sh"
exec make -C "$kdir" M="$here" LLVM="$("$here/tools/kernel.sh" llvm "$kdir")" modules
