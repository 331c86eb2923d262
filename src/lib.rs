//! sacp: structure-aware automatic channel pruning of convolutional networks.
//!
//! The pipeline flows one way: [`ir`] (the network as a graph) → [`deps`] (channel groups
//! that must be pruned together) → [`surgery`] (physical pruning), with [`weights`] holding
//! the tensors and [`exec`] running the network on a burn backend. [`search`] explores
//! pruning-rate combinations of a search-space file; [`pipeline`] runs a whole search.

pub mod data;
pub mod deps;
pub mod exec;
pub mod gcn;
pub mod gcn_rl;
pub mod importance;
pub mod inspect;
pub mod ir;
pub mod models;
pub mod onnx;
pub mod outputs;
pub mod pipeline;
pub mod prune;
pub mod report;
pub mod search;
pub mod spec;
pub mod surgery;
pub mod tomlpos;
pub mod train;
pub mod weights;
