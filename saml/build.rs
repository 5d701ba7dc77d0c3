//! Builds `src/ffi/shim.c` against the installed libxml2 and libxmlsec1
//! (OpenSSL backend), found with pkg-config (Debian: `libxmlsec1-dev`).

fn main() {
    println!("cargo:rerun-if-changed=src/ffi/shim.c");
    let lib = match pkg_config::Config::new()
        .atleast_version("1.2.30")
        .probe("xmlsec1-openssl")
    {
        Ok(lib) => lib,
        Err(e) => {
            println!(
                "cargo:warning=libxmlsec1 (OpenSSL) not found: install the Debian package \
                 libxmlsec1-dev (pkg-config xmlsec1-openssl): {e}"
            );
            std::process::exit(1);
        }
    };
    let mut build = cc::Build::new();
    build
        .file("src/ffi/shim.c")
        .warnings(true)
        .extra_warnings(true);
    for path in &lib.include_paths {
        build.include(path);
    }
    for (name, value) in &lib.defines {
        build.define(name, value.as_deref());
    }
    build.compile("stadttor_saml_shim");
}
