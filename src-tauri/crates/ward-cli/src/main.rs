//! `wardwatch`: the station without a window (servers, tests), the simulator, and checks.
fn main() -> std::process::ExitCode {
    ward_cli::tune_allocator();
    ward_cli::main_with(std::env::args_os())
}
