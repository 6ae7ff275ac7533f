//! MQTT over WebSockets (MQTT 5 section 6, 3.1.1 section 6): the way dashboards and browser
//! tools reach Mosquitto and EMQX. After the HTTP upgrade (answering the `mqtt` subprotocol),
//! binary frames carry the MQTT byte stream; a packet may span frames and a frame may hold
//! several packets, so the frames are joined back into a stream and handed to the same
//! connection code as TCP: one authentication, one ACL, one set of limits.
//!
//! The join is an in-memory pipe with a pump task per connection. WebSocket clients are a
//! few dashboards, not the ward's monitors, so the extra copy is not on the hot path, and the
//! connection code stays one piece for every transport.

use crate::{bump, Shared};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Frame;

/// Picks `mqtt` from the subprotocols the client offers (`mqttv3.1` for old clients).
fn choose_subprotocol(req: &Request) -> Option<&'static str> {
    let offered = req.headers().get_all("sec-websocket-protocol");
    let names: Vec<String> = offered
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    ["mqtt", "mqttv3.1"]
        .into_iter()
        .find(|want| names.iter().any(|n| n == want))
}

pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    shared: &Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
    cert_name: Option<String>,
    started: Instant,
) {
    // The error type is tungstenite's (an HTTP response), fixed by its callback trait.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        // A client that offers no MQTT subprotocol is served anyway (some tools omit it);
        // one that offers it gets it back, as RFC 6455 requires.
        if let Some(p) = choose_subprotocol(req) {
            resp.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static(p));
        }
        Ok(resp)
    };
    // A frame may hold at most two packets of the largest size accepted; bigger frames are
    // refused by the WebSocket layer before any memory is spent on them.
    let limit = shared.cfg.max_packet_size.saturating_mul(2) + 1024;
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let left = shared.cfg.connect_timeout.saturating_sub(started.elapsed());
    let ws = match tokio::time::timeout(
        left,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            bump(&shared.metrics.websocket_handshake_failures);
            tracing::warn!(%peer, error = %e, "WebSocket upgrade failed");
            return;
        }
        Err(_) => {
            bump(&shared.metrics.connect_timeouts);
            tracing::info!(%peer, "closed: WebSocket upgrade not completed in time");
            return;
        }
    };
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (app, pipe) = tokio::io::duplex(64 * 1024);
    let (mut pipe_rd, mut pipe_wr) = tokio::io::split(pipe);

    // Client to broker: binary frames into the pipe. Text frames are not MQTT (MQTT 5
    // 6.0.0-1): the connection ends.
    let inbound = async {
        while let Some(frame) = ws_rx.next().await {
            match frame {
                Ok(Frame::Binary(b)) => {
                    if pipe_wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Ok(Frame::Text(_)) => {
                    bump(&shared.metrics.malformed_packets);
                    tracing::warn!(%peer, "closed: text frame on an MQTT WebSocket");
                    break;
                }
                Ok(Frame::Close(_)) | Err(_) => break,
                // Ping is answered by the WebSocket layer itself; pong needs nothing.
                Ok(_) => {}
            }
        }
        let _ = pipe_wr.shutdown().await;
    };
    // Broker to client: whatever the connection writes, as binary frames.
    let outbound = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = Frame::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
                    if ws_tx.send(frame).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.close().await;
    };
    let pump = async {
        tokio::pin!(inbound, outbound);
        tokio::select! {
            // The connection ended and everything it wrote has been sent.
            _ = &mut outbound => {}
            // The client went: let the connection finish writing (a DISCONNECT) and end.
            _ = &mut inbound => outbound.await,
        }
    };
    tokio::join!(
        crate::conn::serve(shared, app, peer, stop, cert_name, started),
        pump
    );
}
