
pub mod frames;
pub mod netns;
pub mod cli;
pub mod gen;
pub mod difftest;
pub mod bench;
