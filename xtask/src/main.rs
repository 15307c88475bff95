//! `cargo xtask`: project chores.
fn main() {
    eprintln!("cargo xtask: no subcommands yet");
    std::process::exit(2);
}
