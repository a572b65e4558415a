//! Compiles the socket hooks (bpf/vpm_sock.bpf.c) with clang's BPF target;
//! src/hooks.rs embeds the object.  `make deps` installs clang-19; `CLANG`
//! names another clang (any from 14 on builds it).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/vpm_sock.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("vpm_sock.bpf.o");
    let clang = std::env::var("CLANG").ok().unwrap_or_else(|| {
        ["clang-19", "clang"]
            .into_iter()
            .find(|c| Command::new(c).arg("--version").output().is_ok())
            .unwrap_or("clang-19")
            .to_string()
    });
    // The machine's <asm/...> headers: clang's BPF target has no
    // multiarch include directory of its own.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {clang} to build the socket hooks ({e}): run 'make deps', or set CLANG"
            )
        });
    assert!(
        status.success(),
        "{clang} failed to build {src} (it needs libbpf-dev's <bpf/bpf_helpers.h>: run 'make deps')"
    );
}
