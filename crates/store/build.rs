// `embed_migrations!` reads the folder at compile time: a new migration must rebuild this crate.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
