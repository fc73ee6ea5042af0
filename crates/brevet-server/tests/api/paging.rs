//! Every list is paged: `/v1/requests`, `/v1/grants` and `/v1/deliveries` answer at most `limit`
//! rows, newest first, with the next page in a `Link` header while pages are full; following the
//! links lists every row exactly once, even when rows are added meanwhile; a cursor the server
//! did not give is refused. The kill switch and the locked-principal sweep page through every
//! grant, not only the newest thousand.

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
};
use brevet_server::testing::TestStore;
use brevet_wire::{KillBody, RequestView};

use crate::world::*;

/// GET `path` as `token`: the status, the rows and the `Link` header's target, if any.
async fn page(w: &World, token: &str, path: &str) -> (StatusCode, String, Option<String>) {
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = w.app.send(req).await;
    let next = headers.get(header::LINK).map(|v| {
        let v = v.to_str().unwrap();
        assert!(v.ends_with("; rel=\"next\""), "{v}");
        v.trim_start_matches('<')
            .split_once('>')
            .unwrap()
            .0
            .to_owned()
    });
    (status, body, next)
}

/// Follows `Link` from `first` to the end; returns every row's id, page by page.
async fn follow(w: &World, token: &str, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut at = Some(first.to_owned());
    while let Some(path) = at {
        let (status, body, next) = page(w, token, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let rows: Vec<RequestView> = serde_json::from_str(&body).unwrap();
        pages.push(rows.iter().map(|r| r.id.clone()).collect());
        at = next;
        assert!(pages.len() < 50, "the links never end");
    }
    pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_paged_by_link_and_every_row_is_listed_once() {
    for store in TestStore::available() {
        let w = World::with(store, |c| c.server("requests_per_minute = 1000")).await;
        let mut ids = Vec::new();
        for i in 0..7 {
            let r = w
                .app
                .create_request(DAVE, &ask("db.read", ORDERS, "5m", Some(&format!("r{i}"))))
                .await
                .unwrap();
            w.app.activate(DAVE, &r.id).await.unwrap();
            ids.push(r.id);
        }
        // Requests, three a page: 3 + 3 + 1, newest first, and the last page has no link.
        let pages = follow(&w, DAVE, "/v1/requests?limit=3").await;
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 3, 1],
            "{pages:?}"
        );
        let listed: Vec<String> = pages.concat();
        let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
        assert_eq!(listed, newest_first);

        // A page that ends exactly at the last row still links once, to an empty page.
        let pages = follow(&w, ADMIN, "/v1/grants?all=true&limit=7").await;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [7, 0]);

        // Rows added while paging are not listed twice and no row is skipped: they are newer
        // than the cursor, so they belong to the first page, not the ones after it.
        let (_, body, next) = page(&w, DAVE, "/v1/grants?limit=4").await;
        let first: Vec<RequestView> = serde_json::from_str(&body).unwrap();
        let extra = w
            .app
            .create_request(DAVE, &ask("db.read", ORDERS, "5m", Some("late")))
            .await
            .unwrap();
        w.app.activate(DAVE, &extra.id).await.unwrap();
        let rest = follow(&w, DAVE, &next.expect("a full page links on"))
            .await
            .concat();
        let mut seen: Vec<String> = first.iter().map(|r| r.id.clone()).chain(rest).collect();
        assert!(!seen.contains(&extra.id));
        seen.sort();
        let mut all = ids.clone();
        all.sort();
        assert_eq!(seen, all);

        // The other query parameters are kept in the link.
        let (_, _, next) = page(&w, ADMIN, "/v1/grants?all=true&limit=2").await;
        let next = next.unwrap();
        assert!(next.starts_with("/v1/grants?"), "{next}");
        assert!(
            next.contains("all=true") && next.contains("limit=2") && next.contains("cursor="),
            "{next}"
        );

        // Deliveries are paged the same way (none here: no link, an empty list).
        let (status, body, next) = page(&w, ADMIN, "/v1/deliveries?limit=1").await;
        assert_eq!((status, body.as_str(), next), (StatusCode::OK, "[]", None));

        // A cursor the server did not give is refused with what to do, and nothing is listed.
        for bad in ["nonsense", "-5.abc", "12.", "1.a%2Fb", &"9".repeat(120)] {
            for list in ["/v1/requests", "/v1/grants", "/v1/deliveries"] {
                let (status, body, _) = page(&w, ADMIN, &format!("{list}?cursor={bad}")).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{list} {bad}: {body}");
                assert!(
                    body.contains("cursor") && (body.contains("Link") || body.contains("100")),
                    "{list} {bad}: {body}"
                );
            }
        }
    }
}

/// More live grants than the kill switch lists at once (1,000): every one is revoked, the oldest
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_reaches_every_grant_past_its_first_page() {
    let w = World::with(TestStore::Sqlite, |c| {
        c.server("requests_per_minute = 5000")
    })
    .await;
    let mut first = None;
    for i in 0..1_005 {
        let r = w
            .app
            .create_request(DAVE, &ask("db.read", ORDERS, "10m", Some(&format!("k{i}"))))
            .await
            .unwrap();
        w.app.activate(DAVE, &r.id).await.unwrap();
        first.get_or_insert(r.id);
    }
    let report = w
        .app
        .kill(
            ADMIN,
            &KillBody {
                principal: Some("dave".into()),
                all: false,
                reason: "laptop stolen".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        report.grants.len(),
        1_005,
        "every live grant is in the report"
    );
    // They share one binding, so most revocations queue for its lock; what the kill could not
    // finish within its bound is left to the scheduler, which finishes it.
    for _ in 0..600 {
        let left = w.app.grants(ADMIN, true).await.unwrap();
        let live = left.iter().filter(|g| state(g) != "revoked").count();
        if live == 0 && w.target.target().lock().unwrap().is_empty() {
            break;
        }
        w.app.tick().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let oldest = w.app.show(ADMIN, first.as_ref().unwrap()).await.unwrap();
    assert_eq!(
        state(&oldest),
        "revoked",
        "the oldest grant, on the second page"
    );
    assert!(
        w.target.target().lock().unwrap().is_empty(),
        "no access left"
    );
}

/// Each row of a page of requests: its id and who approved it.
fn approvers_shown(body: &str) -> Vec<(String, Vec<String>)> {
    let rows: Vec<RequestView> = serde_json::from_str(body).unwrap();
    rows.into_iter().map(|r| (r.id, r.approvals)).collect()
}

/// A page shows each request's approvers, read for the whole page at once: each row gets its
/// own decisions, none of another's, and a row without any gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_shows_each_requests_own_approvers() {
    for store in TestStore::available() {
        let w = World::new(store).await;
        let create = |token, profile, why| {
            let w = &w;
            async move {
                w.app
                    .create_request(token, &ask(profile, ORDERS, "5m", Some(why)))
                    .await
                    .unwrap()
            }
        };
        let two = create(ALICE, "db.write", "two").await;
        w.app.approve(BOB, &two.id, None).await.unwrap();
        let one = create(ALICE, "db.read", "one").await;
        w.app.approve(CAROL, &one.id, None).await.unwrap();
        let none = create(ALICE, "db.read", "none").await;
        let auto = create(DAVE, "db.read", "auto").await;

        let (status, body, _) = page(&w, ALICE, "/v1/requests").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let shown = approvers_shown(&body);
        assert_eq!(
            shown,
            [
                (none.id.clone(), vec![]),
                (one.id.clone(), vec!["carol".to_owned()]),
                (two.id.clone(), vec!["bob".to_owned()]),
            ]
        );

        w.app.activate(ALICE, &one.id).await.unwrap();
        w.app.activate(DAVE, &auto.id).await.unwrap();
        let (status, body, _) = page(&w, ADMIN, "/v1/grants?all=true").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let shown = approvers_shown(&body);
        assert_eq!(
            shown,
            [(auto.id, vec![]), (one.id, vec!["carol".to_owned()])]
        );
    }
}

/// The portal's approval inbox reads the decisions of its whole page at once and still shows
/// each approver only what waits for them: bob, who approved one request, no longer sees it;
/// carol sees both, each with its own count of approvals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_inbox_shows_each_request_its_own_decisions() {
    for store in TestStore::available() {
        let w = World::new(store).await;
        let two = w
            .app
            .create_request(ALICE, &ask("db.write", ORDERS, "10m", Some("two")))
            .await
            .unwrap();
        w.app.approve(BOB, &two.id, None).await.unwrap();
        let one = w
            .app
            .create_request(ALICE, &ask("db.read", ORDERS, "10m", Some("one")))
            .await
            .unwrap();
        let portal = |token: &'static str, path: String| {
            let w = &w;
            async move {
                let browser = crate::portal_matrix::sign_in(&w.app, token).await;
                let (status, page) = crate::portal_matrix::get(&w.app, &browser, &path).await;
                assert_eq!(status, StatusCode::OK, "{page}");
                page
            }
        };
        let inbox = |token| portal(token, "/approvals".into());
        // The card of request `id`, up to the next card.
        let card = |page: &str, id: &str| -> Option<String> {
            let at = page.find(&format!("data-request=\"{id}\""))?;
            let rest = &page[at..];
            let end = rest[1..]
                .find("data-request=")
                .map_or(rest.len(), |e| e + 1);
            Some(rest[..end].to_owned())
        };

        let bob = inbox(BOB).await;
        assert!(card(&bob, &two.id).is_none(), "bob decided it: {bob}");
        let bobs = card(&bob, &one.id).expect("waits for bob");
        assert!(bobs.contains("0 of 1 approvals"), "{bobs}");

        let carol = inbox(CAROL).await;
        let twos = card(&carol, &two.id).expect("waits for carol");
        assert!(twos.contains("1 of 2 approvals"), "{twos}");
        let ones = card(&carol, &one.id).expect("waits for carol");
        assert!(ones.contains("0 of 1 approvals"), "{ones}");

        // One request's page: its approvers and its decisions, read once for both.
        let page = portal(CAROL, format!("/requests/{}", two.id)).await;
        assert!(page.contains("1 of 2 (bob)"), "{page}");
        let decisions = &page[page.find("id=\"decisions\"").expect("a decisions card")..];
        assert!(
            decisions.contains("bob") && decisions.contains("approved"),
            "{decisions}"
        );
        let auto = w
            .app
            .create_request(DAVE, &ask("db.read", ORDERS, "5m", Some("auto")))
            .await
            .unwrap();
        let page = portal(DAVE, format!("/requests/{}", auto.id)).await;
        assert!(page.contains("0 of 0"), "{page}");
        assert!(!page.contains("id=\"decisions\""), "none to show: {page}");
    }
}
