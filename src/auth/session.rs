//! Authentication over an established session: a `none` request, then
//! each credential the server's methods take, in order.

use std::fmt;
use std::path::{Path, PathBuf};

use russh::client::{AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{Algorithm, Certificate, HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh::{MethodKind, MethodSet};
use zeroize::Zeroizing;

use crate::certificate::{self, KeySigner, Validity};
use crate::handshake::ClientHandler;
use crate::text::PeerText;

use super::load::file_name;
use super::{Challenge, Credential, Prompt, Responder, Secret};

/// The most keyboard-interactive rounds answered in one attempt.
const MAX_ROUNDS: usize = 10;

/// How authentication ended, short of success.
pub(crate) enum AuthFailure {
    /// Every method the server offers was tried and none accepted.
    Rejected { tried: String, allowed: String },
    /// Nothing could be offered (e.g. no agent running).
    NothingToOffer(String),
    /// The session died under us.
    Transport(Option<russh::Error>),
}

/// Asks the server which methods it takes, then tries each credential it
/// offers in order. A `Failure` with the session gone is a dead transport,
/// not a rejection: russh reports both the same way.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    credentials: &[Credential],
) -> Result<(), AuthFailure> {
    let mut session = Session {
        handle,
        user,
        tried: Vec::new(),
        notes: Vec::new(),
        skipped: false,
        allowed: None,
    };
    let none = session.handle.authenticate_none(user).await;
    if session.outcome(none)? {
        return Ok(());
    }
    for credential in credentials {
        if let Credential::Unusable(note) = credential {
            session.notes.push(note.clone());
            continue;
        }
        if !session.offers(credential.methods()) {
            session.skipped = true;
            session
                .notes
                .push(format!("{} not offered by the server", credential.name()));
            continue;
        }
        if session.try_one(credential).await? {
            return Ok(());
        }
    }
    if session.tried.is_empty() && !session.skipped {
        return Err(AuthFailure::NothingToOffer(session.notes.join("; ")));
    }
    let mut tried = if session.tried.is_empty() {
        "nothing".to_owned()
    } else {
        session.tried.join(", ")
    };
    if !session.notes.is_empty() {
        tried = format!("{tried}; {}", session.notes.join("; "));
    }
    Err(AuthFailure::Rejected {
        tried,
        allowed: session.allowed_names(),
    })
}

struct Session<'a> {
    handle: &'a mut Handle<ClientHandler>,
    user: &'a str,
    /// Methods tried, for the error: `publickey (id_ed25519)`, `password`, ...
    tried: Vec<String>,
    /// Methods that could not be tried, and why.
    notes: Vec<String>,
    /// Whether a credential was skipped because the server does not offer
    /// its method.
    skipped: bool,
    /// What the server last said it would accept.
    allowed: Option<MethodSet>,
}

impl Session<'_> {
    /// Ok(true) when accepted, Ok(false) to go on with the next credential.
    async fn try_one(&mut self, credential: &Credential) -> Result<bool, AuthFailure> {
        match credential {
            Credential::Password(secret) => {
                if self.offers(&[MethodKind::Password]) {
                    self.tried.push("password".into());
                    let result = self
                        .handle
                        .authenticate_password(self.user, secret.0.as_str())
                        .await;
                    if self.outcome(result)? {
                        return Ok(true);
                    }
                }
                if self.offers(&[MethodKind::KeyboardInteractive]) {
                    return self.keyboard_interactive(&Answer::Password(secret)).await;
                }
                Ok(false)
            }
            Credential::KeyboardInteractive(responder) => {
                self.keyboard_interactive(&Answer::Caller(responder)).await
            }
            Credential::Key(key, path) => {
                let hash = self.rsa_hash(key.algorithm()).await?;
                self.tried
                    .push(match path.as_ref().and_then(|p| p.file_name()) {
                        Some(name) => format!("publickey ({})", name.to_string_lossy()),
                        None => "publickey".into(),
                    });
                let result = self
                    .handle
                    .authenticate_publickey(
                        self.user,
                        PrivateKeyWithHashAlg::new(key.clone(), hash),
                    )
                    .await;
                self.outcome(result)
            }
            Credential::Certificate { cert, key, file } => {
                let mut signer = KeySigner(key.clone());
                self.certificate(cert, &file_name(file), &mut signer).await
            }
            Credential::AgentCertificate { cert, file, agent } => {
                self.agent_certificate(cert, file, agent.as_ref()).await
            }
            Credential::Agent(path) => self.agent(path.as_ref()).await,
            // Noted by `authenticate`, never offered.
            Credential::Unusable(_) => Ok(false),
        }
    }

    /// Offers a user certificate, signed for by `signer`. One that is
    /// expired or not yet valid by this machine's clock is offered all the
    /// same, as `ssh` does: the server's clock is the one that counts.
    async fn certificate<S>(
        &mut self,
        cert: &Certificate,
        origin: &str,
        signer: &mut S,
    ) -> Result<bool, AuthFailure>
    where
        S: russh::Signer,
        S::Error: fmt::Display,
    {
        let validity = Validity::of(cert);
        if validity != Validity::Valid {
            tracing::debug!(
                certificate = %crate::text::Escaped(origin),
                key_id = %PeerText::new(cert.key_id()),
                "offering a certificate that is {} by this machine's clock, as ssh does",
                validity.as_str()
            );
        }
        let hash = self.rsa_hash(cert.algorithm()).await?;
        self.tried.push(format!(
            "certificate ({origin}: {})",
            certificate::describe(cert)
        ));
        match self
            .handle
            .authenticate_certificate_with(self.user, cert.clone(), hash, signer)
            .await
        {
            Ok(result) => self.outcome(Ok(result)),
            Err(e) => {
                if self.handle.is_closed() {
                    return Err(AuthFailure::Transport(None));
                }
                self.notes.push(format!(
                    "certificate ({origin}) not signed: {}",
                    PeerText::new(&e.to_string())
                ));
                Ok(false)
            }
        }
    }

    /// Reads an auth result: accepted, rejected, or the transport is gone.
    fn outcome(&mut self, result: Result<AuthResult, russh::Error>) -> Result<bool, AuthFailure> {
        match result {
            Ok(AuthResult::Success) => Ok(true),
            Ok(AuthResult::Failure { .. }) if self.handle.is_closed() => {
                Err(AuthFailure::Transport(None))
            }
            Ok(AuthResult::Failure {
                remaining_methods, ..
            }) => {
                self.allowed = Some(remaining_methods);
                Ok(false)
            }
            Err(e) => Err(AuthFailure::Transport(Some(e))),
        }
    }

    /// Whether the server's last list has any of `methods` (before any
    /// list came, everything is offered).
    fn offers(&self, methods: &[MethodKind]) -> bool {
        self.allowed
            .as_ref()
            .is_none_or(|allowed| methods.iter().any(|m| allowed.contains(m)))
    }

    fn allowed_names(&self) -> String {
        match &self.allowed {
            Some(a) if !a.is_empty() => a.iter().map(<&str>::from).collect::<Vec<_>>().join(","),
            _ => "none".into(),
        }
    }

    async fn rsa_hash(&mut self, algorithm: Algorithm) -> Result<Option<HashAlg>, AuthFailure> {
        if !algorithm.is_rsa() {
            return Ok(None);
        }
        self.handle
            .best_supported_rsa_hash()
            .await
            .map(Option::flatten)
            .map_err(|e| AuthFailure::Transport(Some(e)))
    }

    /// Runs keyboard-interactive rounds, each answered by `answer`, at most
    /// [`MAX_ROUNDS`]. A round it cannot answer ends the attempt; the next
    /// method, if any, starts a fresh request (RFC 4256 §3.3 lets a client
    /// abandon the exchange that way).
    async fn keyboard_interactive(&mut self, answer: &Answer<'_>) -> Result<bool, AuthFailure> {
        self.tried
            .push(format!("keyboard-interactive{}", answer.label()));
        let mut reply = self
            .handle
            .authenticate_keyboard_interactive_start(self.user, None)
            .await;
        for _ in 0..MAX_ROUNDS {
            match reply {
                Ok(KeyboardInteractiveAuthResponse::Success) => return Ok(true),
                Ok(KeyboardInteractiveAuthResponse::Failure {
                    remaining_methods,
                    partial_success,
                }) => {
                    return self.outcome(Ok(AuthResult::Failure {
                        remaining_methods,
                        partial_success,
                    }))
                }
                Ok(KeyboardInteractiveAuthResponse::InfoRequest {
                    name,
                    instructions,
                    prompts,
                }) => {
                    let challenge = Challenge {
                        name,
                        instructions,
                        prompts: prompts
                            .into_iter()
                            .map(|p| Prompt {
                                text: p.prompt,
                                echo: p.echo,
                            })
                            .collect(),
                    };
                    let answers = match answer.answer(&challenge) {
                        Ok(a) => a,
                        Err(why) => {
                            self.notes.push(why);
                            return Ok(false);
                        }
                    };
                    // russh takes the answers by value; ours are wiped here.
                    let sent = answers.iter().map(|a| String::clone(a)).collect();
                    drop(answers);
                    reply = self
                        .handle
                        .authenticate_keyboard_interactive_respond(sent)
                        .await;
                }
                Err(e) => return Err(AuthFailure::Transport(Some(e))),
            }
        }
        self.notes.push(format!(
            "keyboard-interactive: more than {MAX_ROUNDS} rounds of prompts"
        ));
        Ok(false)
    }

    /// The agent at `path` (or `SSH_AUTH_SOCK`) and what it holds; `None`
    /// (noted) if it cannot be asked.
    async fn open_agent(
        &mut self,
        path: Option<&PathBuf>,
    ) -> Option<(AgentClient<AgentStream>, Vec<AgentIdentity>)> {
        let connected = match path {
            Some(p) => AgentClient::connect_uds(p).await,
            None => AgentClient::connect_env().await,
        };
        let mut agent = match connected {
            Ok(a) => a,
            Err(e) => {
                let why = match (e, path) {
                    (russh::keys::Error::EnvVar(_), _) => "SSH_AUTH_SOCK is not set".to_owned(),
                    (russh::keys::Error::IO(io), Some(p)) => {
                        format!("{}: {}", p.display(), crate::text::fmt_io(&io))
                    }
                    (russh::keys::Error::IO(io), None) => crate::text::fmt_io(&io),
                    (other, _) => other.to_string(),
                };
                self.notes.push(format!("agent unavailable: {why}"));
                return None;
            }
        };
        match agent.request_identities().await {
            Ok(ids) => Some((agent, ids)),
            Err(e) => {
                self.notes.push(format!("agent unavailable: {e}"));
                None
            }
        }
    }

    /// A `CertificateFile`'s certificate, signed for by the agent with the
    /// plain key it certifies, as `ssh` does when the key is in the agent.
    async fn agent_certificate(
        &mut self,
        cert: &Certificate,
        file: &Path,
        path: Option<&PathBuf>,
    ) -> Result<bool, AuthFailure> {
        let Some((agent, identities)) = self.open_agent(path).await else {
            return Ok(false);
        };
        let key = identities.into_iter().find_map(|id| match id {
            AgentIdentity::PublicKey { key, .. } if key.key_data() == cert.public_key() => {
                Some(key)
            }
            _ => None,
        });
        let Some(key) = key else {
            self.notes.push(format!(
                "certificate {} skipped: no key file or agent key to sign for it",
                file_name(file)
            ));
            return Ok(false);
        };
        let mut signer = AgentKeySigner { agent, key };
        self.certificate(cert, &file_name(file), &mut signer).await
    }

    async fn agent(&mut self, path: Option<&PathBuf>) -> Result<bool, AuthFailure> {
        let Some((mut agent, identities)) = self.open_agent(path).await else {
            return Ok(false);
        };
        if identities.is_empty() {
            self.notes.push("agent holds no keys".into());
            return Ok(false);
        }
        let certs = identities
            .iter()
            .filter(|id| matches!(id, AgentIdentity::Certificate { .. }))
            .count();
        let keys = identities.len() - certs;
        self.tried.push(match certs {
            0 => format!("agent ({keys} keys)"),
            _ => format!("agent ({keys} keys, {certs} certificates)"),
        });
        // In the agent's order, certificates among the keys, as ssh does.
        for identity in identities {
            if !self.offers(&[MethodKind::PublicKey]) {
                break;
            }
            match identity {
                AgentIdentity::PublicKey { key, .. } => {
                    if self.agent_key(key, &mut agent).await? {
                        return Ok(true);
                    }
                }
                AgentIdentity::Certificate { certificate, .. } => {
                    if let Some(why) = certificate::unusable(&certificate, true) {
                        self.notes.push(format!("agent certificate skipped: {why}"));
                        continue;
                    }
                    if self.certificate(&certificate, "agent", &mut agent).await? {
                        return Ok(true);
                    }
                }
            }
            if self.handle.is_closed() {
                return Err(AuthFailure::Transport(None));
            }
        }
        Ok(false)
    }

    async fn agent_key(
        &mut self,
        key: PublicKey,
        agent: &mut AgentClient<AgentStream>,
    ) -> Result<bool, AuthFailure> {
        let hash = self.rsa_hash(key.algorithm()).await?;
        match self
            .handle
            .authenticate_publickey_with(self.user, key, hash, agent)
            .await
        {
            Ok(result) => self.outcome(Ok(result)),
            // The agent would not sign with this key; try the next.
            Err(e) => {
                tracing::debug!(error = %crate::text::Escaped(&e), "agent did not sign");
                Ok(false)
            }
        }
    }
}

/// The agent's connection.
type AgentStream = tokio::net::UnixStream;

/// Signs for a certificate with the agent's plain key that it certifies
/// (the agent signs only for certificates it holds itself).
struct AgentKeySigner {
    agent: AgentClient<AgentStream>,
    key: PublicKey,
}

impl russh::Signer for AgentKeySigner {
    type Error = russh::AgentAuthError;

    async fn auth_sign(
        &mut self,
        _cert: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, Self::Error> {
        let plain = AgentIdentity::PublicKey {
            key: self.key.clone(),
            comment: String::new(),
        };
        Ok(self.agent.sign_request(&plain, hash_alg, to_sign).await?)
    }
}

/// Who answers keyboard-interactive prompts.
enum Answer<'a> {
    /// The password, to a password prompt only.
    Password(&'a Secret),
    Caller(&'a Responder),
}

impl Answer<'_> {
    fn label(&self) -> &'static str {
        match self {
            Answer::Password(_) => " (password)",
            Answer::Caller(_) => "",
        }
    }

    /// One wiped answer per prompt, or why the round cannot be answered
    /// (naming the prompt, never an answer).
    fn answer(&self, challenge: &Challenge) -> Result<Vec<Zeroizing<String>>, String> {
        let prompts = challenge.prompts();
        match self {
            Answer::Password(_) if prompts.is_empty() => Ok(Vec::new()),
            Answer::Password(secret) => match prompts {
                [only] if is_password_prompt(only) => Ok(vec![secret.0.clone()]),
                _ => Err(format!(
                    "keyboard-interactive: not a password prompt: {}",
                    crate::text::PeerText::new(
                        &prompts
                            .iter()
                            .map(|p| p.text())
                            .collect::<Vec<_>>()
                            .join(" | ")
                    )
                )),
            },
            Answer::Caller(responder) => match (responder.0)(challenge) {
                Some(answers) if answers.len() == prompts.len() => {
                    Ok(answers.into_iter().map(Zeroizing::new).collect())
                }
                Some(answers) => {
                    let count = answers.len();
                    drop(answers.into_iter().map(Zeroizing::new).collect::<Vec<_>>());
                    Err(format!(
                        "keyboard-interactive: {count} answers to {} prompts",
                        prompts.len()
                    ))
                }
                None => Err("keyboard-interactive: the caller gave up".into()),
            },
        }
    }
}

/// One hidden prompt that asks for a password (PAM's `Password: `,
/// OpenSSH's `user@host's password: `), in any case.
fn is_password_prompt(prompt: &Prompt) -> bool {
    !prompt.echo() && prompt.text().to_ascii_lowercase().contains("password")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn challenge(prompts: &[(&str, bool)]) -> Challenge {
        Challenge {
            name: String::new(),
            instructions: String::new(),
            prompts: prompts
                .iter()
                .map(|&(text, echo)| Prompt {
                    text: text.into(),
                    echo,
                })
                .collect(),
        }
    }

    #[test]
    fn a_password_answers_only_a_password_prompt() {
        let secret = Secret(Zeroizing::new("pw-77".into()));
        let answer = Answer::Password(&secret);
        for ok in ["Password: ", "alice@h's password: ", "PASSWORD for alice:"] {
            let a = answer.answer(&challenge(&[(ok, false)])).unwrap();
            assert_eq!(a.len(), 1, "{ok}");
            assert_eq!(a[0].as_str(), "pw-77");
        }
        assert!(answer.answer(&challenge(&[])).unwrap().is_empty());
        for refused in [
            vec![("Verification code: ", false)],
            vec![("Duo passcode: ", false)],
            vec![("Password: ", true)],
            vec![("Passwort: ", false)],
            vec![("Password: ", false), ("Verification code: ", false)],
        ] {
            let why = answer.answer(&challenge(&refused)).unwrap_err();
            assert!(why.contains(refused[0].0.trim()), "{why}");
            assert!(!why.contains("pw-77"), "{why}");
        }
    }

    #[test]
    fn the_caller_answers_every_prompt_or_none() {
        let responder = Responder(Arc::new(|c: &Challenge| {
            Some(
                c.prompts()
                    .iter()
                    .map(|p| format!("a:{}", p.text()))
                    .collect(),
            )
        }));
        let a = Answer::Caller(&responder)
            .answer(&challenge(&[("x", true), ("y", false)]))
            .unwrap();
        assert_eq!(
            a.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["a:x", "a:y"]
        );
        let short = Responder(Arc::new(|_: &Challenge| Some(vec![])));
        assert!(Answer::Caller(&short)
            .answer(&challenge(&[("x", true)]))
            .is_err());
    }
}
