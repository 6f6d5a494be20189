//! Unit tests of the ledger with analyses built by hand (the engine's verdicts are tested in
//! the analysis module; here what matters is what the ledger does with them).
