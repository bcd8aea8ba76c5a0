//! ordo-bench: commit latency and throughput of an ordo cluster under
//! closed-loop proposers, knob sweeps and their plots.
//!
//! A run lays out a fresh cluster with `ordo init` in a temporary
//! directory, measures this machine's floor on the same filesystem
//! ([`floor`]), starts the nodes ([`cluster`]), drives `C` closed-loop
//! proposers ([`load`]) and reports what they saw ([`report`]). A sweep
//! ([`sweep`]) runs every combination of the knob lists ([`spec`]) and
//! writes a table, a CSV and SVG plots ([`plot`]). [`tune`] searches the
//! knobs for a goal and ends with the `ordo.toml` snippet that meets it.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cluster;
pub mod data_dir;
pub mod floor;
pub mod load;
pub mod plot;
pub mod report;
pub mod run;
pub mod spec;
pub mod sweep;
pub mod tables;
pub mod timeline;
pub mod tune;
