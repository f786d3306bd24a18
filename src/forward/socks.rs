//! The SOCKS side of dynamic forwarding (`ssh -D`): versions 4, 4a and 5,
//! no authentication, CONNECT only, as OpenSSH's `channels.c` serves them.
//! A request is read within 10 s and at most a few hundred bytes; the
//! reply says whether the server reached the target.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::TunnelError;

/// How long a client has to say where it wants to go.
const REQUEST_TIME: Duration = Duration::from_secs(10);

/// The longest SOCKS 4 user id or 4a host name read (OpenSSH: 256).
const MAX_FIELD: usize = 256;

/// A CONNECT request, and how to answer it.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) host: String,
    pub(super) port: u32,
    version: u8,
}

/// Reads one CONNECT request (answering SOCKS 5's method negotiation).
pub(super) async fn request(tcp: &mut TcpStream) -> Result<Request, String> {
    match tokio::time::timeout(REQUEST_TIME, read_request(tcp)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no request within {REQUEST_TIME:?}")),
    }
}

async fn read_request(tcp: &mut TcpStream) -> Result<Request, String> {
    let io = |e: std::io::Error| e.to_string();
    match tcp.read_u8().await.map_err(io)? {
        4 => {
            let command = tcp.read_u8().await.map_err(io)?;
            let port = tcp.read_u16().await.map_err(io)?;
            let mut ip = [0u8; 4];
            tcp.read_exact(&mut ip).await.map_err(io)?;
            let _user = read_field(tcp).await?;
            if command != 1 {
                let _ = tcp.write_all(&[0, 0x5b, 0, 0, 0, 0, 0, 0]).await;
                return Err(format!("SOCKS 4 command {command} is not CONNECT"));
            }
            // 4a: 0.0.0.x (x not 0) means a host name follows.
            let host = if ip[..3] == [0, 0, 0] && ip[3] != 0 {
                name(read_field(tcp).await?)?
            } else {
                Ipv4Addr::from(ip).to_string()
            };
            Ok(Request {
                host,
                port: u32::from(port),
                version: 4,
            })
        }
        5 => {
            let count = tcp.read_u8().await.map_err(io)?;
            let mut methods = vec![0u8; usize::from(count)];
            tcp.read_exact(&mut methods).await.map_err(io)?;
            if !methods.contains(&0) {
                let _ = tcp.write_all(&[5, 0xff]).await;
                return Err("SOCKS 5 without the no-authentication method".into());
            }
            tcp.write_all(&[5, 0]).await.map_err(io)?;
            let mut head = [0u8; 4];
            tcp.read_exact(&mut head).await.map_err(io)?;
            let [version, command, _, kind] = head;
            if version != 5 {
                return Err(format!("SOCKS 5 request of version {version}"));
            }
            let host = match kind {
                1 => {
                    let mut ip = [0u8; 4];
                    tcp.read_exact(&mut ip).await.map_err(io)?;
                    Ipv4Addr::from(ip).to_string()
                }
                3 => {
                    let len = tcp.read_u8().await.map_err(io)?;
                    let mut bytes = vec![0u8; usize::from(len)];
                    tcp.read_exact(&mut bytes).await.map_err(io)?;
                    name(bytes)?
                }
                4 => {
                    let mut ip = [0u8; 16];
                    tcp.read_exact(&mut ip).await.map_err(io)?;
                    Ipv6Addr::from(ip).to_string()
                }
                other => {
                    let _ = tcp.write_all(&reply5(8)).await;
                    return Err(format!("SOCKS 5 address type {other}"));
                }
            };
            let port = tcp.read_u16().await.map_err(io)?;
            if command != 1 {
                let _ = tcp.write_all(&reply5(7)).await;
                return Err(format!("SOCKS 5 command {command} is not CONNECT"));
            }
            Ok(Request {
                host,
                port: u32::from(port),
                version: 5,
            })
        }
        other => Err(format!("not SOCKS 4 or 5 (first byte {other})")),
    }
}

/// A NUL-terminated field of SOCKS 4, at most [`MAX_FIELD`] bytes.
async fn read_field(tcp: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut field = Vec::new();
    loop {
        let byte = tcp.read_u8().await.map_err(|e| e.to_string())?;
        if byte == 0 {
            return Ok(field);
        }
        if field.len() == MAX_FIELD {
            return Err(format!("a SOCKS 4 field longer than {MAX_FIELD} bytes"));
        }
        field.push(byte);
    }
}

/// A host name as sent, if it is one the server can be asked for.
fn name(bytes: Vec<u8>) -> Result<String, String> {
    match String::from_utf8(bytes) {
        Ok(name) if !name.is_empty() && !name.chars().any(char::is_control) => Ok(name),
        _ => Err("an unusable host name".into()),
    }
}

/// A SOCKS 5 reply with this code and an empty IPv4 address.
fn reply5(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

impl Request {
    /// The target is reached: the bytes may flow.
    pub(super) async fn succeed(&self, tcp: &mut TcpStream) -> std::io::Result<()> {
        match self.version {
            4 => tcp.write_all(&[0, 0x5a, 0, 0, 0, 0, 0, 0]).await,
            _ => tcp.write_all(&reply5(0)).await,
        }
    }

    /// The tunnel failed: the SOCKS code nearest to why.
    pub(super) async fn fail(&self, tcp: &mut TcpStream, why: &TunnelError) -> std::io::Result<()> {
        match self.version {
            4 => tcp.write_all(&[0, 0x5b, 0, 0, 0, 0, 0, 0]).await,
            _ => {
                let code = if why.is_refused() {
                    2 // connection not allowed by ruleset
                } else if why.is_connect_failed() {
                    5 // connection refused
                } else if why.is_timeout() {
                    6 // TTL expired
                } else {
                    1 // general failure
                };
                tcp.write_all(&reply5(code)).await
            }
        }
    }
}
