//! petseg-losses (work in progress).
