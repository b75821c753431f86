"""Simulated channels: the "other companies" piaohao talks to (protocol-faithful fakes of Alipay and
WeChat Pay). Test and demo code only: nothing under src/piaohao imports this package."""
