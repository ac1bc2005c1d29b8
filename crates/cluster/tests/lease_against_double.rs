//! Leader election on a Lease of the API server double: one holder at a
//! time, renewals, takeover once the holder stops renewing, release.

use std::time::{Duration, Instant};

use flux_cluster::{Connection, Held, Holder, LeaseLock};
use flux_testkit::kube::ApiServer;

const ADDRESS: &str = "fluxcd.io/leader-address";

async fn candidate(server: &ApiServer, identity: &str, duration: Duration) -> LeaseLock {
    let connection = Connection {
        kubeconfig: Some(server.kubeconfig()),
        context: None,
    };
    let client = connection.client().await.expect("connects to the double");
    let mut lock = LeaseLock::new(client, "default", "fluxd-test", identity, duration);
    lock.annotate(ADDRESS, format!("{identity}.example:3030"));
    lock
}

async fn attempt(lock: &mut LeaseLock) -> Held {
    lock.try_acquire_or_renew()
        .await
        .expect("the double answers")
}

fn holder(held: &Held) -> Option<&str> {
    match held {
        Held::Following(holder) => holder.identity.as_deref(),
        Held::Leading { .. } => None,
    }
}

/// Tries every 100 ms until `lock` leads; answers with what it took over.
async fn until_leading(lock: &mut LeaseLock) -> Option<Holder> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Held::Leading { taken_from } = attempt(lock).await {
            return taken_from;
        }
        assert!(Instant::now() < deadline, "{} never led", lock.identity());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_candidate_leads_and_the_others_see_who_and_where() {
    let server = ApiServer::start();
    let mut a = candidate(&server, "a", Duration::from_secs(15)).await;
    let mut b = candidate(&server, "b", Duration::from_secs(15)).await;
    let taken = attempt(&mut a).await;
    assert_eq!(
        taken,
        Held::Leading {
            taken_from: Some(Holder::default())
        }
    );
    let seen = attempt(&mut b).await;
    let Held::Following(leader) = &seen else {
        panic!("b leads while a's lease is fresh: {seen:?}");
    };
    assert_eq!(leader.identity.as_deref(), Some("a"));
    assert_eq!(leader.annotations[ADDRESS], "a.example:3030");
    assert_eq!(attempt(&mut a).await, Held::Leading { taken_from: None });
    assert_eq!(holder(&attempt(&mut b).await), Some("a"));
    let lease = server
        .object("Lease", Some("default"), "fluxd-test")
        .expect("the Lease was made");
    assert_eq!(lease["spec"]["holderIdentity"], "a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_not_renewed_for_its_duration_is_taken_over_with_its_annotations() {
    let server = ApiServer::start();
    let duration = Duration::from_secs(1);
    let mut a = candidate(&server, "a", duration).await;
    let mut b = candidate(&server, "b", duration).await;
    a.annotate("fluxcd.io/queued-jobs", "[1]".into());
    assert!(matches!(attempt(&mut a).await, Held::Leading { .. }));
    let asked = Instant::now();
    assert_eq!(holder(&attempt(&mut b).await), Some("a"));
    // a stops renewing (as a killed process does).
    let previous = until_leading(&mut b).await.expect("b took the Lease over");
    assert!(asked.elapsed() >= duration, "b took a fresh lease");
    assert_eq!(previous.identity.as_deref(), Some("a"));
    assert_eq!(previous.annotations["fluxcd.io/queued-jobs"], "[1]");
    let lease = server
        .object("Lease", Some("default"), "fluxd-test")
        .expect("the Lease exists");
    assert_eq!(
        lease["metadata"]["annotations"]["fluxcd.io/queued-jobs"], "[1]",
        "b keeps what it does not set itself"
    );
    assert_eq!(
        lease["metadata"]["annotations"][ADDRESS], "b.example:3030",
        "b sets its own address"
    );
    // a comes back: it is told it lost, and by whom.
    assert_eq!(holder(&attempt(&mut a).await), Some("b"));
    let lease = server
        .object("Lease", Some("default"), "fluxd-test")
        .expect("the Lease exists");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn of_candidates_racing_for_an_expired_lease_exactly_one_leads() {
    let server = ApiServer::start();
    let duration = Duration::from_secs(1);
    let mut gone = candidate(&server, "gone", duration).await;
    assert!(matches!(attempt(&mut gone).await, Held::Leading { .. }));
    let mut racers = Vec::new();
    for name in ["b", "c", "d", "e"] {
        let mut lock = candidate(&server, name, duration).await;
        assert_eq!(holder(&attempt(&mut lock).await), Some("gone"));
        racers.push(lock);
    }
    tokio::time::sleep(duration + Duration::from_millis(200)).await;
    let attempts = racers.iter_mut().map(|lock| async move {
        let held = attempt(lock).await;
        (lock.identity().to_string(), held)
    });
    let results = futures::future::join_all(attempts).await;
    let leaders: Vec<&str> = results
        .iter()
        .filter(|(_, held)| matches!(held, Held::Leading { .. }))
        .map(|(who, _)| who.as_str())
        .collect();
    assert_eq!(leaders.len(), 1, "{results:?}");
    let lease = server
        .object("Lease", Some("default"), "fluxd-test")
        .expect("the Lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], leaders[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_lease_is_taken_at_once() {
    let server = ApiServer::start();
    let duration = Duration::from_secs(15);
    let mut a = candidate(&server, "a", duration).await;
    let mut b = candidate(&server, "b", duration).await;
    assert!(matches!(attempt(&mut a).await, Held::Leading { .. }));
    assert_eq!(holder(&attempt(&mut b).await), Some("a"));
    assert!(a.release().await.expect("the double answers"));
    assert!(
        !b.release().await.expect("the double answers"),
        "b held nothing"
    );
    let taken = attempt(&mut b).await;
    let Held::Leading {
        taken_from: Some(previous),
    } = taken
    else {
        panic!("b did not take the released Lease: {taken:?}");
    };
    assert_eq!(previous.identity, None);
    assert_eq!(previous.annotations[ADDRESS], "a.example:3030");
}
