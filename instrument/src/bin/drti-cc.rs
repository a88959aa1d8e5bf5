//! drti-cc / drti-c++: see `drti_instrument::driver`.
fn main() {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_else(|| "drti-cc".into());
    std::process::exit(drti_instrument::driver::main(&argv0, args.collect()));
}
