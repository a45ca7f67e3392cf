//! Three-way merge of a store-backed session, so that concurrent requests of one session do
//! not erase each other's changes (see `crate::store::write`).

use serde_json::{Map, Value};

use super::SessionState;

impl SessionState {
    /// `theirs` (what the store holds now, written by another request since this one loaded
    /// `base`) with this request's own changes applied: every key whose value differs between
    /// `base` and `self` takes `self`'s value (or is removed), every other key keeps
    /// `theirs`'s. The subject, the binding, the issue time and the deadline are this request's when it
    /// changed them, else theirs; `last_seen` is the later of the two.
    ///
    /// So two requests that change different keys both keep their change, and two that change
    /// the same key end with the value of the one that writes last, never a mix of the two.
    pub(crate) fn merged(&self, base: &SessionState, theirs: &SessionState) -> SessionState {
        let mut out = theirs.clone();
        out.last_seen = self.last_seen.max(theirs.last_seen);
        if self.subject != base.subject {
            out.subject.clone_from(&self.subject);
        }
        if self.issued_at != base.issued_at {
            out.issued_at = self.issued_at;
        }
        if self.binding != base.binding {
            out.binding.clone_from(&self.binding);
        }
        if self.expires_at != base.expires_at {
            out.expires_at = self.expires_at;
        }
        let (mine, before) = (self.data.map(), base.data.map());
        let empty = Map::new();
        let (mine, before) = (mine.unwrap_or(&empty), before.unwrap_or(&empty));
        let changed: Vec<(&String, Option<&Value>)> = mine
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| (k, Some(v)))
            .chain(
                before
                    .keys()
                    .filter(|k| !mine.contains_key(*k))
                    .map(|k| (k, None)),
            )
            .collect();
        for (key, value) in changed {
            match value {
                Some(v) => out.data.set(key, v.clone()),
                None => {
                    out.data.remove(key);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::Timestamp;
    use crate::state::{SessionId, SessionState};

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn base() -> SessionState {
        let mut s = SessionState::new(SessionId::from_bytes([7; 16]), t(1_000), t(100_000));
        s.insert("cart", &[1, 2]).unwrap();
        s.insert("theme", "dark").unwrap();
        s.insert("views", &1).unwrap();
        s
    }

    #[test]
    fn different_keys_both_kept() {
        let b = base();
        let mut mine = b.clone();
        mine.insert("cart", &[1, 2, 3]).unwrap();
        mine.remove("theme").unwrap();
        mine.set_last_seen(t(2_000));
        let mut theirs = b.clone();
        theirs.insert("views", &2).unwrap();
        theirs.insert("lang", "fr").unwrap();
        theirs.set_last_seen(t(3_000));
        let m = mine.merged(&b, &theirs);
        assert_eq!(m.get::<Vec<u32>>("cart").unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(m.get::<String>("theme").unwrap(), None);
        assert_eq!(m.get::<u32>("views").unwrap(), Some(2));
        assert_eq!(m.get::<String>("lang").unwrap().as_deref(), Some("fr"));
        assert_eq!(m.last_seen(), t(3_000), "the later last_seen");
        assert_eq!(m.id(), b.id());
    }

    #[test]
    fn the_same_key_takes_this_requests_value_whole() {
        let b = base();
        let mut mine = b.clone();
        mine.insert("cart", &[9]).unwrap();
        let mut theirs = b.clone();
        theirs.insert("cart", &[1, 2, 3, 4]).unwrap();
        let m = mine.merged(&b, &theirs);
        assert_eq!(m.get::<Vec<u32>>("cart").unwrap(), Some(vec![9]));
    }

    #[test]
    fn unchanged_keys_follow_theirs_even_a_removal() {
        let b = base();
        let mine = b.clone();
        let mut theirs = b.clone();
        theirs.remove("cart").unwrap();
        theirs.set_subject(Some("bob".into()));
        let m = mine.merged(&b, &theirs);
        assert_eq!(m.get::<Vec<u32>>("cart").unwrap(), None, "not resurrected");
        assert_eq!(m.subject(), Some("bob"));
    }

    #[test]
    fn metadata_this_request_changed_wins() {
        let b = base();
        let mut mine = b.clone();
        mine.set_subject(Some("alice".into()));
        mine.set_expires_at(t(50_000));
        let mut theirs = b.clone();
        theirs.set_subject(Some("bob".into()));
        theirs.set_expires_at(t(200_000));
        let m = mine.merged(&b, &theirs);
        assert_eq!(m.subject(), Some("alice"));
        assert_eq!(m.expires_at(), t(50_000));
        assert_eq!(m.issued_at(), b.issued_at());
    }

    #[test]
    fn clear_removes_only_what_this_request_saw() {
        let b = base();
        let mut mine = b.clone();
        mine.clear();
        let mut theirs = b.clone();
        theirs.insert("added_meanwhile", &true).unwrap();
        let m = mine.merged(&b, &theirs);
        assert_eq!(m.get::<bool>("added_meanwhile").unwrap(), Some(true));
        assert_eq!(m.data_map().map(serde_json::Map::len), Some(1));
    }
}
