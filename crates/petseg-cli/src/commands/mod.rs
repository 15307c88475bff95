//! One module per `petseg` verb.

pub mod components;
pub mod convert;
pub mod demo;
pub mod evaluate;
pub mod info;
pub mod phantom;
pub mod predict;
pub mod train;
