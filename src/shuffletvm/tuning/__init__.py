"""Auto-tuning with MetaSchedule: tasks, per-target databases, RPC devices, the tuning loop."""
