//! Reading the official browser client from the `socket.io-client` npm package, for the core to
//! serve (`serveClient` in the reference, on by default).

use std::io;
use std::path::Path;

use bytes::Bytes;
use sio_core::socket::ClientBundle;
use sio_core::socket::client_bundle::CLIENT_FILES;

/// Where the bundle is looked for when the configuration names none: the `dist/` folder of the
/// package installed by `npm install socket.io-client` in the working directory.
pub const DEFAULT_CLIENT_DIR: &str = "node_modules/socket.io-client/dist";

/// Reads the bundle from `dist`, the `dist/` folder of an installed `socket.io-client` package (its
/// version, for the ETag, comes from the package's `package.json`). Only the reference's file names
/// are read; a missing one is simply not served.
pub fn load_client_bundle(dist: impl AsRef<Path>) -> io::Result<ClientBundle> {
    let dist = dist.as_ref();
    let manifest = std::fs::read(dist.join("../package.json"))?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let version = manifest["version"].as_str().unwrap_or("0.0.0").to_owned();
    let mut files = Vec::new();
    for name in CLIENT_FILES {
        if let Ok(data) = std::fs::read(dist.join(name)) {
            files.push((name.to_owned(), Bytes::from(data)));
        }
    }
    if files.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no client file in {}", dist.display()),
        ));
    }
    Ok(ClientBundle::new(&version, files))
}
