//! One module per `petseg` verb.

pub mod components;
pub mod evaluate;
pub mod info;
pub mod phantom;
pub mod convert;
pub mod train;
pub mod predict;
pub mod demo;
