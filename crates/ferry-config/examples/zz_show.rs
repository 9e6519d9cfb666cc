fn main() {
    let dir = std::env::args().nth(1).unwrap();
    match ferry_config::load_dir(dir.as_ref(), &ferry_config::LoadOptions::default()) {
        Ok(l) => print!("{}", ferry_config::render(&l.warnings, false)),
        Err(e) => { let all: Vec<_> = e.all().cloned().collect(); print!("{}", ferry_config::render(&all, false)); }
    }
}
