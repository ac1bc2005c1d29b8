//! The workloads the API lists, made when asked: the manifests read last
//! are already in memory as a [`Checkout`], so the listing keeps a handle
//! on it and on what the cluster and git's history add, not a copy in the
//! API's shape (with ten thousand workloads that copy was a tenth of the
//! daemon's memory).

use std::collections::HashMap;
use std::sync::Arc;

use flux_api::{Container, Hold, Policies, Rollout, Workload, WorkloadPage};
use flux_image::ImageRef;
use flux_manifests::Checkout;

/// The API's workloads: those of the checkout read last, then the ones
/// carried from files that could not be read, each shown with its holds
/// and what the cluster said of it. Cloning is cheap (shared handles).
#[derive(Debug, Clone, Default)]
pub struct Workloads {
    /// The manifests read last; none before git is read.
    checkout: Option<Arc<Checkout>>,
    /// Listed after the checkout's, as given.
    given: Arc<[Workload]>,
    /// Holds by workload id; none leaves each workload's own.
    holds: Option<Arc<HashMap<String, Vec<Hold>>>>,
    /// What the cluster said; none leaves each workload's own.
    cluster: Option<ClusterFacts>,
}

/// What the cluster said of the workloads last, by workload id. Cloning is
/// cheap: each map is replaced whole when the cluster says more.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    /// Each workload's rollout.
    pub rollouts: Arc<HashMap<String, Rollout>>,
    /// The images each workload's pod template runs, by container name.
    pub images: Arc<HashMap<String, HashMap<String, String>>>,
    /// Why the last sync of a workload failed.
    pub sync_errors: Arc<HashMap<String, String>>,
}

impl From<Vec<Workload>> for Workloads {
    /// Workloads listed as given, with no checkout behind them.
    fn from(given: Vec<Workload>) -> Workloads {
        Workloads {
            given: given.into(),
            ..Workloads::default()
        }
    }
}

/// One workload of the listing, before it is made into the API's shape.
#[derive(Clone, Copy)]
enum Entry<'a> {
    Read(&'a flux_manifests::Workload),
    Given(&'a Workload),
}

impl<'a> Entry<'a> {
    fn id(&self) -> &'a str {
        match self {
            Entry::Read(w) => w.id.as_str(),
            Entry::Given(w) => &w.id,
        }
    }

    fn namespace(&self) -> &'a str {
        match self {
            Entry::Read(w) => w.id.namespace(),
            Entry::Given(w) => w.id.split(':').next().unwrap_or_default(),
        }
    }

    /// Whether its id or an image holds `lowercase`, whatever their case.
    fn matches(&self, lowercase: &str) -> bool {
        let holds = |text: &str| text.to_lowercase().contains(lowercase);
        holds(self.id())
            || match self {
                Entry::Read(w) => w.containers.iter().any(|c| holds(&c.spelling)),
                Entry::Given(w) => w.containers.iter().any(|c| holds(&c.image)),
            }
    }
}

impl Workloads {
    /// The workloads of `checkout`, then `carried` (from files that could
    /// not be read, as last read).
    pub fn read(checkout: Arc<Checkout>, carried: Vec<Workload>) -> Workloads {
        Workloads {
            checkout: Some(checkout),
            given: carried.into(),
            ..Workloads::default()
        }
    }

    /// Shows `holds` (by workload id) in place of the ones shown before.
    pub fn show_holds(&mut self, holds: Vec<(String, Hold)>) {
        let mut by_id: HashMap<String, Vec<Hold>> = HashMap::new();
        for (id, hold) in holds {
            by_id.entry(id).or_default().push(hold);
        }
        self.holds = Some(Arc::new(by_id));
    }

    /// Shows what the cluster said in place of what it said before.
    pub fn show_cluster(&mut self, facts: ClusterFacts) {
        self.cluster = Some(facts);
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.of_checkout().len() + self.given.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every workload in the API's shape, made one at a time.
    pub fn iter(&self) -> impl Iterator<Item = Workload> + '_ {
        self.entries().map(|entry| self.made(entry))
    }

    /// The workloads whose id `keep` accepts, in the API's shape, made one
    /// at a time from a clone of the listing: an answer can be written from
    /// it while the daemon moves on to a newer view.
    pub fn selected<K>(&self, keep: K) -> impl Iterator<Item = Workload> + Send + 'static
    where
        K: Fn(&str) -> bool + Send + 'static,
    {
        let listing = self.clone();
        (0..self.len()).filter_map(move |index| {
            let entry = listing.entry(index)?;
            keep(entry.id()).then(|| listing.made(entry))
        })
    }

    /// One page of the workloads as `query` selects them, with how many it
    /// selects in all and every namespace there is. Only the page's
    /// workloads are made.
    pub fn page(&self, query: &PageQuery<'_>) -> WorkloadPage {
        let search = query
            .search
            .map(str::to_lowercase)
            .filter(|s| !s.is_empty());
        let mut total = 0;
        let mut selected = Vec::new();
        let mut namespaces = std::collections::BTreeSet::new();
        for entry in self.entries() {
            let namespace = entry.namespace();
            namespaces.insert(namespace);
            if query.namespace.is_some_and(|ns| ns != namespace) {
                continue;
            }
            if search.as_deref().is_some_and(|s| !entry.matches(s)) {
                continue;
            }
            if total >= query.offset && selected.len() < query.limit {
                selected.push(self.made(entry));
            }
            total += 1;
        }
        WorkloadPage {
            total,
            offset: query.offset,
            workloads: selected,
            namespaces: namespaces.into_iter().map(String::from).collect(),
        }
    }

    fn of_checkout(&self) -> &[flux_manifests::Workload] {
        self.checkout.as_deref().map_or(&[], |c| &c.workloads)
    }

    fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        let read = self.of_checkout().iter().map(Entry::Read);
        read.chain(self.given.iter().map(Entry::Given))
    }

    fn entry(&self, index: usize) -> Option<Entry<'_>> {
        let read = self.of_checkout();
        match read.get(index) {
            Some(workload) => Some(Entry::Read(workload)),
            None => self.given.get(index - read.len()).map(Entry::Given),
        }
    }

    fn made(&self, entry: Entry<'_>) -> Workload {
        let mut workload = match entry {
            Entry::Read(w) => workload(w),
            Entry::Given(w) => w.clone(),
        };
        if let Some(holds) = &self.holds {
            workload.holds = holds.get(&workload.id).cloned().unwrap_or_default();
        }
        if let Some(cluster) = &self.cluster {
            cluster.show_on(&mut workload);
        }
        workload
    }
}

impl ClusterFacts {
    /// Puts the rollout, sync error and the images it runs on `workload`.
    fn show_on(&self, workload: &mut Workload) {
        workload.rollout = self.rollouts.get(&workload.id).cloned();
        workload.sync_error = self.sync_errors.get(&workload.id).cloned();
        let images = self.images.get(&workload.id);
        for container in &mut workload.containers {
            let running = images.and_then(|i| i.get(&container.name));
            container.live_image = running
                .filter(|running| !same_image(running, &container.image))
                .cloned();
        }
    }
}

/// Whether two spellings name the same image (`nginx:1` and
/// `docker.io/library/nginx:1` do).
pub(crate) fn same_image(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (ImageRef::parse(a), ImageRef::parse(b)) {
        (Ok(a), Ok(b)) => a.canonical() == b.canonical(),
        _ => false,
    }
}

/// A workload of the manifests in the API's shape, with nothing added yet.
pub(super) fn workload(w: &flux_manifests::Workload) -> Workload {
    Workload {
        id: w.id.to_string(),
        containers: w
            .containers
            .iter()
            .map(|c| Container {
                name: c.name.clone(),
                image: c.spelling.clone(),
                live_image: None,
            })
            .collect(),
        policies: policies(&w.policies),
        rollout: None,
        sync_error: None,
        read_error: None,
        holds: Vec::new(),
    }
}

fn policies(p: &flux_manifests::Policies) -> Policies {
    Policies {
        automated: p.automated,
        locked: p.locked,
        ignore: p.ignore.is_some(),
        locked_user: p.locked_user.clone(),
        locked_msg: p.locked_msg.clone(),
        tags: p
            .tags
            .iter()
            .map(|(c, policy)| (c.clone(), policy.to_string()))
            .collect(),
        rollback_on_failure: p.rollback_on_failure,
        reverted: p
            .reverted
            .iter()
            .map(|(c, r)| {
                let tag = flux_api::RevertedTag {
                    tag: r.tag.clone(),
                    reason: r.reason.clone(),
                };
                (c.clone(), tag)
            })
            .collect(),
    }
}

/// What the dashboard's listing asks for: a namespace, a search and a page.
#[derive(Debug, Clone, Default)]
pub struct PageQuery<'a> {
    /// Only this namespace.
    pub namespace: Option<&'a str>,
    /// Only workloads whose id or a container's image holds this text,
    /// whatever its case.
    pub search: Option<&'a str>,
    /// How many selected workloads to pass over.
    pub offset: usize,
    /// The most to answer with.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_manifests::LoadOptions;

    const FRONT_END: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: front-end\n  namespace: sock-shop\nspec:\n  template:\n    spec:\n      containers:\n      - name: front-end\n        image: weaveworksdemos/front-end:0.3.12\n      - name: proxy\n        image: nginx:1.25\n";

    fn front_end() -> Arc<Checkout> {
        let path = std::path::Path::new("front-end.yaml");
        Arc::new(Checkout::from_text(path, FRONT_END, LoadOptions::default()))
    }

    fn ready() -> Rollout {
        Rollout {
            status: flux_api::RolloutStatus::Ready,
            desired: 1,
            updated: 1,
            ready: 1,
            messages: Vec::new(),
        }
    }

    #[test]
    fn workloads_made_when_asked_show_their_holds_and_what_the_cluster_said() {
        let id = "sock-shop:deployment/front-end";
        let mut listed = Workloads::read(
            front_end(),
            vec![named("sock-shop:deployment/carried", "a:1")],
        );
        let hold = Hold {
            container: "front-end".into(),
            tag: "0.3.11".into(),
            from: "0.3.12".into(),
            commit: "a3f9c1e0".into(),
        };
        listed.show_holds(vec![(id.into(), hold.clone())]);
        let running = HashMap::from([
            (
                "front-end".to_string(),
                "weaveworksdemos/front-end:0.3.11".to_string(),
            ),
            (
                "proxy".to_string(),
                "docker.io/library/nginx:1.25".to_string(),
            ),
        ]);
        let rollout = ready();
        listed.show_cluster(ClusterFacts {
            rollouts: Arc::new(HashMap::from([(id.to_string(), rollout.clone())])),
            images: Arc::new(HashMap::from([(id.to_string(), running)])),
            sync_errors: Arc::new(HashMap::from([(
                "sock-shop:deployment/carried".to_string(),
                "refused".to_string(),
            )])),
        });
        let workloads: Vec<Workload> = listed.iter().collect();
        assert_eq!(workloads.len(), 2);
        let made = &workloads[0];
        assert_eq!(made.id, id);
        assert_eq!(made.holds, [hold]);
        assert_eq!(made.rollout, Some(rollout));
        let live: Vec<Option<&str>> = made
            .containers
            .iter()
            .map(|c| c.live_image.as_deref())
            .collect();
        assert_eq!(
            live,
            [Some("weaveworksdemos/front-end:0.3.11"), None],
            "nginx:1.25 is docker.io/library/nginx:1.25: it runs what git says"
        );
        assert_eq!(workloads[1].sync_error.as_deref(), Some("refused"));
        assert!(workloads[1].holds.is_empty() && workloads[1].rollout.is_none());
        // Shown again, the holds and what the cluster said replace the old.
        listed.show_holds(Vec::new());
        listed.show_cluster(ClusterFacts::default());
        let again = listed.iter().next().expect("the checkout's workload");
        assert!(again.holds.is_empty() && again.rollout.is_none());
        assert!(again.containers.iter().all(|c| c.live_image.is_none()));
    }

    #[test]
    fn a_page_searches_the_checkout_by_id_and_image_as_written() {
        let listed = Workloads::read(front_end(), vec![named("default:deployment/app", "app:1")]);
        let by_image = PageQuery {
            search: Some("NGINX:1.25"),
            limit: 10,
            ..PageQuery::default()
        };
        let page = listed.page(&by_image);
        assert_eq!(page.total, 1);
        assert_eq!(page.workloads[0].id, "sock-shop:deployment/front-end");
        assert_eq!(page.namespaces, ["default", "sock-shop"]);
        let spelled_in_full = PageQuery {
            search: Some("docker.io/library/nginx"),
            limit: 10,
            ..PageQuery::default()
        };
        assert_eq!(
            listed.page(&spelled_in_full).total,
            0,
            "git spells it nginx:1.25"
        );
    }

    #[test]
    fn given_workloads_are_listed_as_given_until_something_is_shown_on_them() {
        let mut given = named("default:deployment/app", "app:1");
        given.rollout = Some(ready());
        let listed = Workloads::from(vec![given.clone()]);
        assert_eq!(listed.iter().collect::<Vec<_>>(), [given]);
    }

    #[test]
    fn a_selection_makes_only_the_workloads_kept_from_its_own_clone() {
        let mut listed =
            Workloads::read(front_end(), vec![named("default:deployment/app", "app:1")]);
        let selected = listed.selected(|id| id.starts_with("default:"));
        listed.show_holds(Vec::new());
        let ids: Vec<String> = selected.map(|w| w.id).collect();
        assert_eq!(ids, ["default:deployment/app"]);
        assert_eq!(listed.selected(|_| false).count(), 0);
    }

    fn named(id: &str, image: &str) -> Workload {
        Workload {
            id: id.into(),
            containers: vec![Container {
                name: "app".into(),
                image: image.into(),
                live_image: None,
            }],
            policies: Policies::default(),
            rollout: None,
            sync_error: None,
            read_error: None,
            holds: Vec::new(),
        }
    }

    #[test]
    fn a_page_holds_what_the_filter_selects_from_its_offset_with_the_total() {
        let all: Vec<Workload> = (0..30)
            .map(|n| {
                let ns = if n % 3 == 0 { "blue" } else { "green" };
                named(
                    &format!("{ns}:deployment/app{n:02}"),
                    &format!("org/Image{n}:1"),
                )
            })
            .collect();
        let query = PageQuery {
            namespace: Some("blue"),
            search: None,
            offset: 2,
            limit: 3,
        };
        let all = Workloads::from(all);
        let page = all.page(&query);
        assert_eq!(page.total, 10);
        let ids: Vec<&str> = page.workloads.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "blue:deployment/app06",
                "blue:deployment/app09",
                "blue:deployment/app12"
            ]
        );
        assert_eq!(page.namespaces, ["blue", "green"]);
        // The search reads ids and images alike, whatever their case.
        let by_image = PageQuery {
            search: Some("image2"),
            limit: 100,
            ..PageQuery::default()
        };
        let found = all.page(&by_image);
        assert_eq!(found.total, 1 + 10, "Image2 and Image20 to Image29");
        let past_the_end = PageQuery {
            offset: 40,
            limit: 10,
            ..PageQuery::default()
        };
        let empty = all.page(&past_the_end);
        assert_eq!((empty.total, empty.workloads.len()), (30, 0));
    }
}
