//! petseg-eval (work in progress).
