//! Fixture generators for benchmarks: many small manifests, one file each.

use std::path::Path;

/// Writes `resources` manifests into `dir`, spread over `namespaces` namespaces
/// (`bench-0`, `bench-1`, …; one Namespace file each, not counted): alternately a
/// ConfigMap and a Deployment. Returns the number of files written.
pub fn manifests(dir: &Path, resources: usize, namespaces: usize) -> std::io::Result<usize> {
    let namespaces = namespaces.max(1);
    for n in 0..namespaces {
        let text = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench-{n}\n");
        std::fs::write(dir.join(format!("0000-namespace-{n}.yaml")), text)?;
    }
    for i in 0..resources {
        let namespace = format!("bench-{}", i % namespaces);
        let text = if i % 2 == 0 {
            config_map(i, &namespace)
        } else {
            deployment(i, &namespace)
        };
        std::fs::write(dir.join(format!("{:04}-resource.yaml", i + 1)), text)?;
    }
    Ok(resources + namespaces)
}

fn config_map(i: usize, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\n  namespace: {namespace}\n  \
         labels:\n    app: app-{i}\ndata:\n  LOG_LEVEL: info\n  REPLICA: \"{i}\"\n  \
         config.yaml: |\n    listen: 0.0.0.0:8080\n    upstream: http://backend-{i}:8080\n"
    )
}

fn deployment(i: usize, namespace: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: {namespace}\n  \
         labels:\n    app: app-{i}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: app-{i}\n  \
         template:\n    metadata:\n      labels:\n        app: app-{i}\n    spec:\n      containers:\n      \
         - name: app\n        image: registry.example.com/team/app-{i}:1.{i}.0\n        ports:\n        \
         - containerPort: 8080\n        env:\n        - name: MODE\n          value: production\n        \
         resources:\n          requests:\n            cpu: 100m\n            memory: 128Mi\n"
    )
}
