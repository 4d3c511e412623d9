"""The inspection service: FastAPI, dynamic micro-batching, top-5, heatmaps, Prometheus metrics.

``create_app`` (``service.main``) builds the app; ``ilcs serve`` (``service.run``) runs it under uvicorn.
"""
