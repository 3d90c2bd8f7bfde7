//! `sqlx::migrate!` embeds the migrations of `migrations/`: a new or
//! changed one must rebuild this crate.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
