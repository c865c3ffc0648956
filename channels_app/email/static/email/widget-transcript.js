// Filled by the channel.
