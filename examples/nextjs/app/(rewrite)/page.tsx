import Notifications from '../components/Notifications';

export default function Page() {
  return <Notifications />;
}
