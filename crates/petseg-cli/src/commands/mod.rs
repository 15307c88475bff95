//! One module per `petseg` verb.

pub mod info;
