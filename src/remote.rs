//! Devices by name, here or on other machines (burn-remote): the names a search space lists in
//! `[evaluate] devices` and `sacp serve --devices` takes, connecting them, and serving this
//! machine's devices to other sacp processes.
//!
//! A local device is `cpu` (burn-flex), `wgpu` (the default adapter) or `wgpu:N` (the N-th
//! discrete GPU). A remote one is `ws://HOST:PORT#N` (device N of a `sacp serve` reached over
//! WebSocket: unencrypted, for trusted networks) or `iroh://ENDPOINT-ID#N` (over Iroh:
//! authenticated and encrypted, found through Iroh's public relays; `iroh://ENDPOINT-ID@HOST:PORT#N`
//! dials the address directly, without relays). `#N` may be left out for device 0.

use burn::server::{IrohIdentity, IrohTransport, RemoteServer, TokenAuthorizer, WebSocketTransport};
use burn::tensor::remote::{ConnectError, EndpointId, IrohHost, IrohRelays, RemoteHost};
use burn::tensor::{Device, DeviceKind};
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::str::FromStr;

/// The forms a device name takes, for error messages.
pub const DEVICE_FORMS: &str = "`cpu`, `wgpu`, `wgpu:N`, `ws://HOST:PORT#N`, `iroh://ENDPOINT-ID#N` or `iroh://ENDPOINT-ID@HOST:PORT#N`";

/// A device by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// burn-flex on this machine's CPU.
    Cpu,
    /// burn-wgpu on this machine: the default adapter, or the N-th discrete GPU.
    Wgpu(Option<usize>),
    /// Device `index` of the `sacp serve` at `url` (`ws://HOST:PORT`).
    WebSocket {
        /// `ws://HOST:PORT`.
        url: String,
        /// Which of the server's devices.
        index: usize,
    },
    /// Device `index` of the `sacp serve --iroh` whose endpoint id is `id`.
    Iroh {
        /// The server's endpoint id, as `sacp serve --iroh` prints it.
        id: String,
        /// `HOST:PORT` to dial directly (relays disabled); none: found through public relays.
        address: Option<String>,
        /// Which of the server's devices.
        index: usize,
    },
}

/// A device name that is none of [`DEVICE_FORMS`].
#[derive(Debug, thiserror::Error)]
#[error("`{name}` is not a device name: {reason}; valid: {DEVICE_FORMS}")]
pub struct BadDeviceName {
    name: String,
    reason: String,
}

impl FromStr for DeviceSpec {
    type Err = BadDeviceName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| BadDeviceName {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        let with_index = |rest: &str| -> Result<(String, usize), BadDeviceName> {
            match rest.split_once('#') {
                None => Ok((rest.to_string(), 0)),
                Some((target, index)) => index
                    .parse()
                    .map(|index| (target.to_string(), index))
                    .map_err(|_| bad("the device index after `#` is not a number")),
            }
        };
        if name == "cpu" {
            Ok(DeviceSpec::Cpu)
        } else if name == "wgpu" {
            Ok(DeviceSpec::Wgpu(None))
        } else if let Some(index) = name.strip_prefix("wgpu:") {
            index
                .parse()
                .map(|i| DeviceSpec::Wgpu(Some(i)))
                .map_err(|_| bad("the GPU index after `wgpu:` is not a number"))
        } else if let Some(rest) = name.strip_prefix("ws://") {
            let (address, index) = with_index(rest)?;
            let port = address.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(_))) if !host.is_empty() && !address.contains('/') => Ok(DeviceSpec::WebSocket {
                    url: format!("ws://{address}"),
                    index,
                }),
                _ => Err(bad("a WebSocket server is `ws://HOST:PORT`")),
            }
        } else if let Some(rest) = name.strip_prefix("iroh://") {
            let (target, index) = with_index(rest)?;
            let (id, address) = match target.split_once('@') {
                Some((id, address)) if address.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) => {
                    (id.to_string(), Some(address.to_string()))
                }
                Some(_) => return Err(bad("the address after `@` is `HOST:PORT`")),
                None => (target, None),
            };
            EndpointId::from_str(&id).map_err(|e| bad(&format!("`{id}` is not an Iroh endpoint id ({e})")))?;
            Ok(DeviceSpec::Iroh { id, address, index })
        } else {
            Err(bad("unknown form"))
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Wgpu(None) => f.write_str("wgpu"),
            DeviceSpec::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            DeviceSpec::WebSocket { url, index } => write!(f, "{url}#{index}"),
            DeviceSpec::Iroh { id, address: None, index } => write!(f, "iroh://{id}#{index}"),
            DeviceSpec::Iroh {
                id,
                address: Some(address),
                index,
            } => write!(f, "iroh://{id}@{address}#{index}"),
        }
    }
}

/// A device could not be opened or reached.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A remote device is listed but no token was given.
    #[error("{device}: a remote device needs the server's token (the environment variable SACP_REMOTE_TOKEN or `[evaluate] token_file`)")]
    NoToken {
        /// The device's name.
        device: String,
    },
    /// The server refused the token.
    #[error("{device}: the server refused the token (it was started with another --token-file)")]
    Refused {
        /// The device's name.
        device: String,
    },
    /// Anything else: unreachable, no such device, a local device that would not start.
    #[error("{device}: {reason}")]
    Unavailable {
        /// The device's name.
        device: String,
        /// Why.
        reason: String,
    },
}

impl DeviceSpec {
    /// Whether the device is on another machine (or process).
    pub fn is_remote(&self) -> bool {
        matches!(self, DeviceSpec::WebSocket { .. } | DeviceSpec::Iroh { .. })
    }

    /// Opens the device; a remote one is connected with `token` before this returns, so an
    /// unreachable server or a refused token is reported here, not on first use.
    pub fn connect(&self, token: Option<&str>) -> Result<Device, DeviceError> {
        let unavailable = |reason: String| DeviceError::Unavailable {
            device: self.to_string(),
            reason,
        };
        let remote = |host: RemoteHost, index: usize| {
            let token = token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| DeviceError::NoToken { device: self.to_string() })?;
            Device::remote_options(&host.with_credential(token))
                .device_index(index)
                .init()
                .map_err(|e| match e {
                    ConnectError::Unauthorized => DeviceError::Refused { device: self.to_string() },
                    other => unavailable(other.to_string()),
                })
        };
        match self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            DeviceSpec::Wgpu(kind) => Device::wgpu_options()
                .device_kind(kind.map_or(DeviceKind::DefaultDevice, DeviceKind::DiscreteGpu))
                .init()
                .map_err(|e| unavailable(format!("cannot start wgpu: {e}"))),
            DeviceSpec::WebSocket { url, index } => remote(RemoteHost::websocket(url), *index),
            DeviceSpec::Iroh { id, address, index } => {
                let id = EndpointId::from_str(id).map_err(|e| unavailable(e.to_string()))?;
                let host = match address {
                    None => IrohHost::new(id),
                    Some(address) => {
                        let resolved = address
                            .to_socket_addrs()
                            .map_err(|e| unavailable(format!("cannot resolve {address}: {e}")))?;
                        resolved.fold(IrohHost::new(id).with_relays(IrohRelays::Disabled), IrohHost::with_address)
                    }
                };
                remote(RemoteHost::iroh(host), *index)
            }
        }
    }
}

/// Reads a token file: its first line, without surrounding whitespace; an empty one is refused.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!(
            "the token file {} is empty: write a secret token on its first line",
            path.display()
        ));
    }
    Ok(token)
}

/// How `sacp serve` is reached.
pub enum Listen {
    /// WebSocket on a TCP listener (unencrypted: trusted networks only).
    WebSocket(std::net::TcpListener),
    /// Iroh with this identity (the endpoint id clients dial is its public half), through
    /// the public relays, or only on UDP `port` when `port` is given (relays disabled).
    Iroh {
        /// The server's secret key (boxed: a key is 224 bytes).
        identity: Box<IrohIdentity>,
        /// UDP port for direct connections; none: any port, reached through the public relays.
        port: Option<u16>,
    },
}

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A device name was not one this machine can host.
    #[error("--devices: {0}")]
    Device(String),
    /// burn-remote's server failed.
    #[error("the server failed: {0}")]
    Server(String),
}

/// The devices named in `--devices` (comma-separated local device names), opened. A server
/// hosts devices of one backend (burn-remote's rule): `cpu` cannot be served beside `wgpu`.
pub fn local_devices(names: &str) -> Result<(Vec<DeviceSpec>, Vec<Device>), ServeError> {
    let mut specs = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let spec = DeviceSpec::from_str(name).map_err(|e| ServeError::Device(e.to_string()))?;
        if spec.is_remote() {
            return Err(ServeError::Device(format!(
                "`{name}` is remote: a server hosts this machine's devices"
            )));
        }
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(ServeError::Device(
            "no device named; e.g. --devices cpu or --devices wgpu:0,wgpu:1".into(),
        ));
    }
    let cpu = specs.iter().filter(|s| **s == DeviceSpec::Cpu).count();
    if cpu > 0 && cpu < specs.len() {
        return Err(ServeError::Device(
            "a server hosts devices of one backend: serve `cpu` and the GPUs from two `sacp serve` processes on two ports".into(),
        ));
    }
    if cpu > 1 {
        return Err(ServeError::Device("`cpu` is named twice: the CPU is one device".into()));
    }
    let devices = specs
        .iter()
        .map(|s| s.connect(None).map_err(|e| ServeError::Device(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((specs, devices))
}

/// Serves `devices` to clients presenting `token` until the process gets SIGTERM or Ctrl+C.
pub fn serve(devices: Vec<Device>, token: &str, listen: Listen) -> Result<(), ServeError> {
    let authorizer = TokenAuthorizer::new(token).map_err(|_| ServeError::Server("the token is empty".into()))?;
    let server = RemoteServer::new(devices).with_authorizer(authorizer);
    let served = match listen {
        Listen::WebSocket(listener) => server.serve(WebSocketTransport::from_listener(listener)),
        Listen::Iroh { identity, port: None } => server.serve(IrohTransport::new(*identity)),
        Listen::Iroh {
            identity,
            port: Some(port),
        } => server.serve(IrohTransport::new(*identity).with_relays(IrohRelays::Disabled).with_port(port)),
    };
    served.map_err(|e| ServeError::Server(e.to_string()))
}

/// The Iroh identity kept in `path` (made on first use), and the endpoint id clients dial.
pub fn iroh_identity(path: &Path) -> Result<(IrohIdentity, String), ServeError> {
    let identity = IrohIdentity::load_or_create(path)
        .map_err(|e| ServeError::Server(format!("cannot read or create the Iroh identity {}: {e}", path.display())))?;
    let id = identity.id().to_string();
    Ok((identity, id))
}

#[cfg(test)]
mod tests {
    use super::DeviceSpec;
    use std::str::FromStr;

    #[test]
    fn device_names_parse_and_print_back() {
        for (name, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("wgpu", DeviceSpec::Wgpu(None)),
            ("wgpu:1", DeviceSpec::Wgpu(Some(1))),
            (
                "ws://10.0.0.2:4000#1",
                DeviceSpec::WebSocket {
                    url: "ws://10.0.0.2:4000".into(),
                    index: 1,
                },
            ),
            (
                "ws://gpu-host:4000",
                DeviceSpec::WebSocket {
                    url: "ws://gpu-host:4000".into(),
                    index: 0,
                },
            ),
        ] {
            let parsed = DeviceSpec::from_str(name).unwrap();
            assert_eq!(parsed, spec, "{name}");
            assert_eq!(DeviceSpec::from_str(&parsed.to_string()).unwrap(), spec);
        }
        let id = burn::server::IrohIdentity::from_bytes([7; 32]).id().to_string();
        for (name, address) in [
            (format!("iroh://{id}#2"), None),
            (format!("iroh://{id}@127.0.0.1:4100#2"), Some("127.0.0.1:4100")),
        ] {
            let spec = DeviceSpec::Iroh {
                id: id.clone(),
                address: address.map(str::to_string),
                index: 2,
            };
            assert_eq!(DeviceSpec::from_str(&name).unwrap(), spec);
            assert_eq!(spec.to_string(), name);
        }
        let no_port = format!("iroh://{id}@host#0");
        for bad in [
            "gpu",
            "wgpu:x",
            "ws://host",
            "ws://host:port",
            "ws://:4000",
            "ws://h:1#a",
            "iroh://nope",
            "http://h:1",
            &no_port,
        ] {
            let e = DeviceSpec::from_str(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("ws://HOST:PORT#N"), "{e}");
        }
    }
}
