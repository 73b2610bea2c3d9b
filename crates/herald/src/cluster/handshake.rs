//! The route handshake as pure functions: the frames two nodes exchange before a route
//! carries anything, and the checks on them. No sockets here; `link` moves the bytes.
//!
//! 1. The dialler sends its hello: cluster name, node name, generation, route address and a
//!    fresh nonce ([`Dial::start`]).
//! 2. The acceptor checks the cluster name and answers with its own hello, carrying a fresh
//!    nonce and its proof: an HMAC-SHA256, under the shared secret, of both nonces
//!    ([`accept`]).
//! 3. The dialler verifies that proof and sends its own, over the nonces in the other order
//!    and with another role label ([`Dial::finish`]); the acceptor verifies it
//!    ([`Accept::finish`]).
//!
//! Both sides' nonces enter both proofs, so a recorded handshake cannot be replayed, and the
//! role label keeps one side's proof from being reflected back as the other's. Proofs are
//! verified with the `hmac` crate's constant-time comparison. Nonces come from the operating
//! system's random source only: without it there is no handshake (and no route), never a
//! predictable nonce.

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::Peer;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of randomness in a nonce.
const NONCE_BYTES: usize = 16;

/// This node's side of a handshake: who it is and what it shares with its cluster.
#[derive(Clone, Copy)]
pub(super) struct Local<'a> {
    /// The cluster's name; a peer of another cluster is refused.
    pub(super) cluster: &'a str,
    /// The secret every member shares.
    pub(super) secret: &'a [u8],
    /// This node.
    pub(super) me: &'a Peer,
}

/// Why a handshake failed: what to tell the peer (if anything), and what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refused {
    /// The `-ERR` text the peer gets before the connection closes.
    pub(super) tell_peer: Option<&'static str>,
    /// The reason, for this node's log.
    pub(super) why: String,
}

impl Refused {
    fn new(tell_peer: Option<&'static str>, why: impl Into<String>) -> Refused {
        Refused {
            tell_peer,
            why: why.into(),
        }
    }
}

/// The first frame of each side.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    cluster: String,
    name: String,
    generation: u64,
    /// The sender's advertised route address (part of its identity).
    route: SocketAddr,
    nonce: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proof: Option<String>,
}

/// The dialler's last frame.
#[derive(Debug, Serialize, Deserialize)]
struct Proof {
    proof: String,
}

/// A fresh nonce from the operating system's random source, in hex; an error (and so no
/// route) when that source fails.
pub(super) fn nonce() -> Result<String, Refused> {
    let mut bytes = [0u8; NONCE_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        Refused::new(
            None,
            format!(
                "the operating system's random source failed ({e}); no route without a fresh nonce"
            ),
        )
    })?;
    Ok(hex::encode(bytes))
}

/// HMAC-SHA256 of `parts` under `key`, each part length-prefixed so that no two lists of
/// parts feed the MAC the same bytes.
pub(super) fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

impl Local<'_> {
    /// The MAC a side proves the secret with: `role`, then the nonces in the role's order.
    fn proof_mac(&self, role: &[u8], first: &str, second: &str) -> HmacSha256 {
        mac(
            self.secret,
            &[
                b"herald-route",
                role,
                self.cluster.as_bytes(),
                first.as_bytes(),
                second.as_bytes(),
            ],
        )
    }

    /// The proof, in hex, that this side sends.
    fn prove(&self, role: &[u8], first: &str, second: &str) -> String {
        hex::encode(self.proof_mac(role, first, second).finalize().into_bytes())
    }

    /// Whether `proof` (hex, from the peer) is the right one, compared in constant time.
    fn verify(&self, proof: &str, role: &[u8], first: &str, second: &str) -> bool {
        let Ok(bytes) = hex::decode(proof) else {
            return false;
        };
        self.proof_mac(role, first, second)
            .verify_slice(&bytes)
            .is_ok()
    }

    fn hello(&self, nonce: &str, proof: Option<String>) -> Vec<u8> {
        let hello = Hello {
            cluster: self.cluster.to_owned(),
            name: self.me.name.to_string(),
            generation: self.me.generation,
            route: self.me.addr,
            nonce: nonce.to_owned(),
            proof,
        };
        serde_json::to_vec(&hello).unwrap_or_default()
    }
}

impl Hello {
    fn peer(self) -> Peer {
        Peer {
            name: self.name.into(),
            generation: self.generation,
            addr: self.route,
        }
    }
}

/// The dialler between its hello and the acceptor's answer.
#[derive(Debug)]
pub(super) struct Dial {
    nonce: String,
}

impl Dial {
    /// Starts a handshake with `nonce` (from [`nonce`]); returns the hello to send.
    pub(super) fn start(local: &Local<'_>, nonce: String) -> (Dial, Vec<u8>) {
        let hello = local.hello(&nonce, None);
        (Dial { nonce }, hello)
    }

    /// Checks the acceptor's hello and proof; returns who answered and the proof to send.
    pub(super) fn finish(
        self,
        local: &Local<'_>,
        answer: &[u8],
    ) -> Result<(Peer, Vec<u8>), Refused> {
        let theirs: Hello = serde_json::from_slice(answer)
            .map_err(|e| Refused::new(None, format!("bad hello from the acceptor: {e}")))?;
        if theirs.cluster != local.cluster {
            return Err(Refused::new(
                None,
                format!(
                    "the peer is in cluster {:?}, not {:?}",
                    theirs.cluster, local.cluster
                ),
            ));
        }
        let proven = theirs
            .proof
            .as_deref()
            .is_some_and(|p| local.verify(p, b"accept", &self.nonce, &theirs.nonce));
        if !proven {
            return Err(Refused::new(
                Some("authentication failed"),
                "the peer failed to prove the cluster secret",
            ));
        }
        let proof = Proof {
            proof: local.prove(b"dial", &theirs.nonce, &self.nonce),
        };
        let frame = serde_json::to_vec(&proof).unwrap_or_default();
        Ok((theirs.peer(), frame))
    }
}

/// The acceptor between its answer and the dialler's proof.
#[derive(Debug)]
pub(super) struct Accept {
    nonce: String,
    theirs: Hello,
}

/// Checks a dialler's hello; returns the acceptor's state and the answer to send (its hello
/// with its proof), made with `nonce` (from [`nonce`]).
pub(super) fn accept(
    local: &Local<'_>,
    hello: &[u8],
    nonce: String,
) -> Result<(Accept, Vec<u8>), Refused> {
    let Ok(theirs) = serde_json::from_slice::<Hello>(hello) else {
        return Err(Refused::new(Some("bad ROUTE hello"), "bad ROUTE hello"));
    };
    if theirs.cluster != local.cluster {
        return Err(Refused::new(
            Some("cluster name mismatch"),
            format!(
                "the peer {:?} is in cluster {:?}, not {:?}",
                theirs.name, theirs.cluster, local.cluster
            ),
        ));
    }
    let proof = local.prove(b"accept", &theirs.nonce, &nonce);
    let answer = local.hello(&nonce, Some(proof));
    Ok((Accept { nonce, theirs }, answer))
}

impl Accept {
    /// Checks the dialler's proof; returns who dialled.
    pub(super) fn finish(self, local: &Local<'_>, proof: &[u8]) -> Result<Peer, Refused> {
        let proven = serde_json::from_slice::<Proof>(proof)
            .is_ok_and(|p| local.verify(&p.proof, b"dial", &self.nonce, &self.theirs.nonce));
        if !proven {
            return Err(Refused::new(
                Some("authentication failed"),
                format!(
                    "the peer {:?} failed to prove the cluster secret",
                    self.theirs.name
                ),
            ));
        }
        Ok(self.theirs.peer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, port: u16) -> Peer {
        Peer {
            name: name.into(),
            generation: 7,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Runs a whole handshake between a dialler and an acceptor, with fixed nonces.
    fn shake(dialler: Local<'_>, acceptor: Local<'_>) -> Result<(Peer, Peer), Refused> {
        let (dial, hello) = Dial::start(&dialler, "d1".into());
        let (accept, answer) = super::accept(&acceptor, &hello, "a1".into())?;
        let (acceptor_seen, proof) = dial.finish(&dialler, &answer)?;
        let dialler_seen = accept.finish(&acceptor, &proof)?;
        Ok((dialler_seen, acceptor_seen))
    }

    #[test]
    fn members_of_one_cluster_learn_who_the_other_is() {
        let (a, b) = (peer("a", 1), peer("b", 2));
        let local = |me| Local {
            cluster: "c",
            secret: b"s3cret",
            me,
        };
        let (dialler, acceptor) = shake(local(&a), local(&b)).unwrap();
        assert_eq!((dialler, acceptor), (a, b));
    }

    #[test]
    fn a_wrong_secret_is_refused_on_either_side() {
        let (a, b) = (peer("a", 1), peer("b", 2));
        let good = Local {
            cluster: "c",
            secret: b"right",
            me: &a,
        };
        let bad = Local {
            cluster: "c",
            secret: b"wrong",
            me: &b,
        };
        // The dialler sees the acceptor's proof fail.
        let err = shake(good, bad).unwrap_err();
        assert_eq!(err.tell_peer, Some("authentication failed"));
        // The acceptor sees the dialler's proof fail (the dialler cannot check the acceptor's
        // proof either, so let it through by hand to reach the acceptor's check).
        let (_, hello) = Dial::start(&bad, "d".into());
        let (accept, _) = super::accept(&good, &hello, "a".into()).unwrap();
        let forged = serde_json::to_vec(&Proof {
            proof: bad.prove(b"dial", "a", "d"),
        })
        .unwrap();
        let err = accept.finish(&good, &forged).unwrap_err();
        assert_eq!(err.tell_peer, Some("authentication failed"));
    }

    #[test]
    fn another_cluster_is_refused_by_name() {
        let (a, b) = (peer("a", 1), peer("b", 2));
        let one = Local {
            cluster: "one",
            secret: b"s",
            me: &a,
        };
        let two = Local {
            cluster: "two",
            secret: b"s",
            me: &b,
        };
        let err = shake(one, two).unwrap_err();
        assert_eq!(err.tell_peer, Some("cluster name mismatch"));
        assert!(err.why.contains("\"one\""), "{}", err.why);
    }

    #[test]
    fn a_recorded_or_reflected_proof_does_not_pass() {
        let (a, b) = (peer("a", 1), peer("b", 2));
        let dialler = Local {
            cluster: "c",
            secret: b"s",
            me: &a,
        };
        let acceptor = Local { me: &b, ..dialler };
        // Record a good handshake.
        let (dial, hello) = Dial::start(&dialler, "d1".into());
        let (accept, answer) = super::accept(&acceptor, &hello, "a1".into()).unwrap();
        let (_, proof) = dial.finish(&dialler, &answer).unwrap();
        accept.finish(&acceptor, &proof).unwrap();
        // Replayed against an acceptor with a fresh nonce, the recorded proof fails.
        let (accept, _) = super::accept(&acceptor, &hello, "a2".into()).unwrap();
        assert!(accept.finish(&acceptor, &proof).is_err());
        // The acceptor's own proof sent back as the dialler's fails (another role).
        let (accept, answer) = super::accept(&acceptor, &hello, "a3".into()).unwrap();
        let theirs: Hello = serde_json::from_slice(&answer).unwrap();
        let reflected = serde_json::to_vec(&Proof {
            proof: theirs.proof.unwrap(),
        })
        .unwrap();
        assert!(accept.finish(&acceptor, &reflected).is_err());
    }

    #[test]
    fn malformed_frames_are_refused_without_panicking() {
        let (a, b) = (peer("a", 1), peer("b", 2));
        let dialler = Local {
            cluster: "c",
            secret: b"s",
            me: &a,
        };
        let acceptor = Local { me: &b, ..dialler };
        for junk in [&b""[..], b"{", b"[]", b"{\"cluster\":\"c\"}", &[0xff, 0xfe]] {
            let err = super::accept(&acceptor, junk, "a".into()).unwrap_err();
            assert_eq!(err.tell_peer, Some("bad ROUTE hello"));
            let (dial, _) = Dial::start(&dialler, "d".into());
            assert!(dial.finish(&dialler, junk).is_err());
        }
        let (dial, hello) = Dial::start(&dialler, "d".into());
        let (accept, answer) = super::accept(&acceptor, &hello, "a".into()).unwrap();
        // A proof that is not hex, is short, or is missing.
        for proof in [&b"{\"proof\":\"zz\"}"[..], b"{\"proof\":\"00\"}", b"{}"] {
            let (accept, _) = super::accept(&acceptor, &hello, "a".into()).unwrap();
            assert!(accept.finish(&acceptor, proof).is_err());
        }
        // The acceptor's answer with a proof of the right length but the wrong value.
        let mut tampered: Hello = serde_json::from_slice(&answer).unwrap();
        tampered.proof = Some(format!("{:0>64}", "1"));
        let tampered = serde_json::to_vec(&tampered).unwrap();
        assert!(dial.finish(&dialler, &tampered).is_err());
        drop(accept);
    }

    #[test]
    fn nonces_are_fresh_hex() {
        let (x, y) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(x, y);
        assert_eq!(x.len(), 2 * NONCE_BYTES);
        assert!(hex::decode(&x).is_ok());
    }
}
