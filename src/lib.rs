//! sacp: structure-aware automatic channel pruning of convolutional networks.
//!
//! The pipeline flows one way: [`ir`] (the network as a graph) → [`deps`] (channel groups
//! that must be pruned together) → [`surgery`] (physical pruning), with [`weights`] holding
//! the tensors and [`exec`] running the network on a burn backend.

pub mod data;
pub mod deps;
pub mod exec;
pub mod gcn;
pub mod importance;
pub mod inspect;
pub mod ir;
pub mod models;
pub mod prune;
pub mod spec;
pub mod surgery;
pub mod train;
pub mod weights;
