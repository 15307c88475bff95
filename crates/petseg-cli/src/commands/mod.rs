//! One module per `petseg` verb.

pub mod info;
pub mod phantom;
pub mod convert;
