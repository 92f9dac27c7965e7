//! Immutable settings shared by pointer: each distinct value is leaked
//! once and shared by everything configured with it.
//!
//! For values read on every call (a retry policy's settings, a classifier's
//! status sets): a `&'static` is 8 bytes to copy into each call's future and
//! nothing to count, where a copy of the value was hundreds of bytes and an
//! `Arc` an atomic increment and decrement per call (`crate::recycle`
//! measured +34 ns with two threads).
//!
//! Sharing aliases nothing: the values are immutable and equal ones are
//! interchangeable, so a call reading another configuration's copy reads
//! what its own would say. The table holds one entry per distinct value a
//! program configures, a handful in practice, made when layers are built,
//! never per call; a program that built layers with ever-new settings
//! would grow it, which is the price of a pointer per call.

use std::any::Any;
use std::sync::Mutex;

/// The shared copy of `value`, leaked the first time it is seen.
pub(crate) fn intern<T: PartialEq + Send + Sync + 'static>(value: T) -> &'static T {
    static TABLE: Mutex<Vec<&'static (dyn Any + Send + Sync)>> = Mutex::new(Vec::new());
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let found = table
        .iter()
        .find_map(|v| v.downcast_ref::<T>().filter(|v| **v == value));
    if let Some(found) = found {
        return found;
    }
    let leaked: &'static T = Box::leak(Box::new(value));
    table.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn equal_values_share_one_copy_and_different_ones_do_not() {
        let a = intern(String::from("interned: a"));
        let again = intern(String::from("interned: a"));
        let b = intern(String::from("interned: b"));
        assert!(std::ptr::eq(a, again));
        assert!(!std::ptr::eq(a, b));
    }

    #[test]
    fn values_of_different_types_never_meet() {
        let n = intern(7u32);
        let m = intern(7u64);
        assert_eq!((*n, *m), (7, 7));
    }
}
