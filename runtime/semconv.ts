/** The incubating OpenTelemetry messaging attribute names we emit (semantic-conventions 1.45), kept local. */
export const ATTR_MESSAGING_SYSTEM_NAME = "messaging.system.name";
export const ATTR_MESSAGING_SYSTEM = "messaging.system"; // deprecated name, still read by older backends
export const ATTR_MESSAGING_OPERATION_TYPE = "messaging.operation.type";
export const ATTR_MESSAGING_OPERATION_NAME = "messaging.operation.name";
export const ATTR_MESSAGING_DESTINATION_NAME = "messaging.destination.name";
export const ATTR_MESSAGING_CONSUMER_GROUP_NAME = "messaging.consumer.group.name";
export const ATTR_MESSAGING_MESSAGE_BODY_SIZE = "messaging.message.body.size";
export const ATTR_MESSAGING_BATCH_MESSAGE_COUNT = "messaging.batch.message_count";
export const ATTR_ERROR_TYPE = "error.type";
export const MESSAGING_SYSTEM_NATS = "nats";
