//! fluxd's allocator returns freed memory while it idles: jemalloc with one
//! arena, freed pages purged at once and by a background thread (set in
//! `.cargo/config.toml`, built into the binary).

use std::process::Command;

#[test]
fn fluxd_is_built_with_one_arena_and_background_purging() {
    // jemalloc prints its settings at exit when asked through its own
    // environment variable, which adds to the built-in settings.
    let output = Command::new(env!("CARGO_BIN_EXE_fluxd"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("fluxd runs");
    assert!(output.status.success(), "{output:?}");
    let stats = String::from_utf8_lossy(&output.stderr);
    for setting in [
        "opt.narenas: 1\n",
        "opt.background_thread: true",
        "opt.dirty_decay_ms: 0 ",
    ] {
        assert!(stats.contains(setting), "{setting:?} not in:\n{stats}");
    }
}
