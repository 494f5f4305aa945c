import os

print(f"hello from imgscript ({os.environ.get('APP_ENV', 'dev')})")
