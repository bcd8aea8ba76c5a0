fn main() {
    println!("ordo-bench: not built yet");
}
