pub mod bench;
pub mod cli;
pub mod difftest;
pub mod etcd;
pub mod frames;
pub mod gen;
pub mod netns;
pub mod proc;
