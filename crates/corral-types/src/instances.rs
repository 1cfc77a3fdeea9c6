//! The closed state sets of Perspective instances and images (perspective.md 5, 6), so the
//! state machine and the store speak of states, not of strings a typo could invent. The wire
//! and the database keep the contract's text (`as_str`); a stored text outside the set fails
//! the read instead of becoming some default.

use std::fmt;

/// Defines a closed set with its wire text, `parse`, `Display` and (with `sqlx`) TEXT
/// encode/decode.
macro_rules! closed_set {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every member, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The contract's text, as the API shows it and the database stores it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The member of that text; `None` outside the set.
            pub fn parse(s: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|x| x.as_str() == s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        #[cfg(feature = "sqlx")]
        crate::sqlx_text!($name);
    };
}

closed_set!(
    /// An instance's state (perspective 5.3): settled states and the transitional state of each
    /// action, which its job moves on to the action's end state.
    InstanceState {
        /// Accepted by `POST /instances`, its job not started yet.
        Queued => "queued",
        /// The launch job is talking to the driver.
        Launching => "launching",
        /// Running.
        Launched => "launched",
        Starting => "starting",
        ShuttingDown => "shutting_down",
        Shutoff => "shutoff",
        Rebooting => "rebooting",
        HardRebooting => "hard_rebooting",
        Pausing => "pausing",
        Paused => "paused",
        Resuming => "resuming",
        Suspending => "suspending",
        Suspended => "suspended",
        Resizing => "resizing",
        Rebuilding => "rebuilding",
        Deleting => "deleting",
        /// A failed action or a VM its cloud no longer has.
        Error => "error",
    }
);

closed_set!(
    /// A private image's state (perspective 6): a snapshot goes `queued` → `saving` → `saved`,
    /// a delete `saved`/`error` → `deleting` → gone.
    ImageState {
        Queued => "queued",
        Saving => "saving",
        Saved => "saved",
        Deleting => "deleting",
        Error => "error",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        for s in InstanceState::ALL {
            assert_eq!(InstanceState::parse(s.as_str()), Some(*s));
        }
        for s in ImageState::ALL {
            assert_eq!(ImageState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(InstanceState::parse("running"), None);
        assert_eq!(InstanceState::ShuttingDown.as_str(), "shutting_down");
        assert_eq!(ImageState::parse("deleted"), None);
    }
}
