//! meshguard for reqwest users (feature `reqwest`).
