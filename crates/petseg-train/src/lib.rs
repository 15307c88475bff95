//! petseg-train (work in progress).
