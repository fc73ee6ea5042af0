//! An axum app served on its own thread and tokio runtime, so a synchronous test (or a
//! `#[tokio::test]`) can run a stand-in beside Brevet; stops and joins on drop.

use std::{net::SocketAddr, thread::JoinHandle};

pub struct Served {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    /// Binds `addr` now (so the port is known and taken) and serves `app` on thread `name`.
    pub fn start(name: &str, addr: SocketAddr, app: axum::Router) -> std::io::Result<Served> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(Served {
            url,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
