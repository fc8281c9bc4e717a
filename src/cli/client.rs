//! A minimal blocking Kafka client for the command-line tools: one connection, one request at a time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// Client-side failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network trouble.
    #[error("cannot talk to {addr}: {source}")]
    Io {
        /// Broker address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The broker's answer could not be understood.
    #[error("bad response: {0}")]
    Protocol(String),
    /// The broker refused the operation.
    #[error("{0}")]
    Refused(String),
}

/// A connection to one broker.
pub struct Client {
    addr: String,
    stream: TcpStream,
    correlation: i32,
}

/// Largest response accepted by the tool (responses to admin requests are small).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

impl Client {
    /// Connects to `addr` (HOST:PORT).
    pub fn connect(addr: &str) -> Result<Client, ClientError> {
        let io = |source| ClientError::Io {
            addr: addr.to_string(),
            source,
        };
        let stream = TcpStream::connect(addr).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(io)?;
        Ok(Client {
            addr: addr.to_string(),
            stream,
            correlation: 0,
        })
    }

    /// Sends `req` as `api` v`version` and decodes the response.
    pub fn call<Req, Resp>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, ClientError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("vltava-cli")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api.request_header_version(version))
            .and_then(|_| req.encode(&mut body, version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        let size = i32::try_from(body.len()).map_err(|_| {
            ClientError::Protocol(format!("request of {} bytes is too large", body.len()))
        })?;
        frame.put_i32(size);
        frame.extend_from_slice(&body);
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream.write_all(&frame).map_err(io)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(io)?;
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > MAX_RESPONSE {
            return Err(ClientError::Protocol(format!("response size {size}")));
        }
        let mut buf = vec![0u8; size as usize];
        self.stream.read_exact(&mut buf).map_err(io)?;
        let mut buf = Bytes::from(buf);
        let rh = ResponseHeader::decode(&mut buf, api.response_header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if rh.correlation_id != self.correlation {
            return Err(ClientError::Protocol(format!(
                "correlation id {} != {}",
                rh.correlation_id, self.correlation
            )));
        }
        Resp::decode(&mut buf, version).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
