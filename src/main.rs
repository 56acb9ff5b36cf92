fn main() {
    std::process::exit(boxwright_cli_placeholder());
}

fn boxwright_cli_placeholder() -> i32 {
    0
}
