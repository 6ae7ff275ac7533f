// No console window on Windows release builds; logs go to the configured sinks.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    ward_cli::tune_allocator();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // One installed program: with a subcommand it is the `wardwatch` CLI (headless station,
    // simulator, checks); without, it opens the station window.
    if ward_cli::is_cli_invocation(&args) {
        return ward_cli::main_with(args);
    }
    match wardwatch_app::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wardwatch-station: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
