//! Links RocksDB statically from Debian's `librocksdb-dev` (`.cargo/config.toml` sets
//! `ROCKSDB_STATIC`): inside one executable RocksDB reaches its thread-local
//! counters directly instead of through `__tls_get_addr`, which the shared library
//! pays on every call. The static archive needs the compression libraries it was
//! built with; they are named after it on the link line.
//!
//! With `ROCKSDB_COMPILE=1` librocksdb-sys builds its bundled RocksDB instead
//! (feature `bundled-rocksdb`), which brings its own LZ4 and needs none of these.

fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    println!("cargo:rerun-if-env-changed=ROCKSDB_COMPILE");
    let compiled =
        std::env::var("ROCKSDB_COMPILE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if std::env::var_os("ROCKSDB_STATIC").is_some() && !compiled {
        for lib in ["snappy", "lz4", "zstd", "z", "bz2"] {
            println!("cargo:rustc-link-arg=-l{lib}");
        }
    }
}
