//! Links RocksDB statically from Debian's `librocksdb-dev` (`.cargo/config.toml` sets
//! `ROCKSDB_STATIC`): inside one executable RocksDB reaches its thread-local
//! counters directly instead of through `__tls_get_addr`, which the shared library
//! pays on every call. The static archive needs the compression libraries it was
//! built with; they are named after it on the link line.

fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if std::env::var_os("ROCKSDB_STATIC").is_some() {
        for lib in ["snappy", "lz4", "zstd", "z", "bz2"] {
            println!("cargo:rustc-link-arg=-l{lib}");
        }
    }
}
