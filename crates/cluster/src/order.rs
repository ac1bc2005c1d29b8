//! The order in which kinds are applied, as the original Flux did: what others refer
//! to goes first. Garbage collection deletes in the reverse order.

/// Number of ranks: a rank's objects are applied together, ranks one after another.
pub const RANKS: usize = 5;

/// The rank of a kind (0 first); kinds not named here (custom resources, …) go last.
pub fn rank(kind: &str) -> usize {
    match kind {
        "Namespace" | "CustomResourceDefinition" => 0,
        "ServiceAccount" | "ClusterRole" | "Role" | "PodSecurityPolicy" | "PersistentVolume"
        | "Service" => 1,
        "ResourceQuota"
        | "LimitRange"
        | "Secret"
        | "ConfigMap"
        | "RoleBinding"
        | "ClusterRoleBinding"
        | "PersistentVolumeClaim"
        | "Ingress" => 2,
        "Deployment"
        | "DaemonSet"
        | "StatefulSet"
        | "ReplicaSet"
        | "Job"
        | "CronJob"
        | "Pod"
        | "ReplicationController" => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_before_config_before_workloads_before_the_rest() {
        let kinds = ["Widget", "Deployment", "ConfigMap", "Service", "Namespace"];
        let mut sorted = kinds;
        sorted.sort_by_key(|k| rank(k));
        assert_eq!(
            sorted,
            ["Namespace", "Service", "ConfigMap", "Deployment", "Widget"]
        );
        assert_eq!(rank("CustomResourceDefinition"), 0);
    }
}
