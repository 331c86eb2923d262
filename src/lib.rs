//! sacp: structure-aware automatic channel pruning of convolutional networks.
//!
//! The pipeline flows one way: [`ir`] (the network as a graph) → [`deps`] (channel groups
//! that must be pruned together) → [`surgery`] (physical pruning), with [`weights`] holding
//! the tensors and [`exec`] running the network on a burn backend. [`channels`] is the
//! vocabulary of scores and keep-sets that [`gcn`], [`gcn_rl`] and [`importance`] share;
//! [`search`] explores pruning-rate combinations of a search-space file; [`pipeline`] runs a
//! whole search and [`report`] renders it. ARCHITECTURE.md is the map.

pub mod channels;
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
pub mod remote;
pub mod report;
pub mod search;
pub mod spec;
pub mod surgery;
pub mod tomlpos;
pub mod train;
pub mod weights;
