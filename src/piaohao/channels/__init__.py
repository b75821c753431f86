"""Payment channels: each lives in its own folder behind `channels.spi.Channel`."""
